"""Measured forward costs of a pair: the drafter/target cost ratio ``c`` and the verification
cost ``v(k)`` of scoring ``k`` drafts in one target forward, in target decode-step units.

Each is the median of ``repeats`` timed forwards with a KV cache of a real prompt (so they price
the same operations as the engine's steps). ``v(k) = 1 + slope * k`` is fitted by least squares.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence

import numpy as np
import torch


@torch.inference_mode()
def _step_seconds(model, prompt: Sequence[int], k: int, repeats: int) -> float:
    from transformers import DynamicCache

    times = []
    for _ in range(repeats):
        cache = DynamicCache(config=model.config)
        model(input_ids=torch.tensor([list(prompt)]), cache=cache, use_cache=True,
              logits_to_keep=1)
        x = torch.tensor([list(prompt[-k:])])
        t0 = time.perf_counter()
        model(input_ids=x, cache=cache, use_cache=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure_costs(target, drafter, prompt: Sequence[int], ks: Sequence[int] = (2, 4, 6, 11, 21),
                  repeats: int = 5) -> dict:
    """``{"c", "verify": {k: v}, "verify_slope", "target_step_s", "drafter_step_s"}``;
    ``k`` counts the tokens of a verification forward (the last token + ``k - 1`` drafts)."""
    t1 = _step_seconds(target, prompt, 1, repeats)
    d1 = _step_seconds(drafter, prompt, 1, repeats)
    v = {k: _step_seconds(target, prompt, k, repeats) / t1 for k in ks}
    drafts = np.array([k - 1 for k in ks], float)
    slope = float(np.linalg.lstsq(drafts[:, None], np.array(list(v.values())) - 1.0,
                                  rcond=None)[0][0])
    return {"c": d1 / t1, "verify": {str(k): x for k, x in v.items()}, "verify_slope": slope,
            "target_step_s": t1, "drafter_step_s": d1, "threads": torch.get_num_threads()}
