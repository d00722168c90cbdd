"""Measured forward costs of a pair: the drafter/target cost ratio ``c`` and the verification
cost ``v(k)`` of scoring ``k`` drafts in one target forward, in target decode-step units.

Each is the median of ``repeats`` timed forwards with a KV cache of a real prompt (so they price
the same operations as the engine's steps). ``v(k) = 1 + slope * k`` is fitted by least squares.

:func:`verify_curve`: a machine's curve measured once per (machine, pair, dtype) and cached in
``verify-curves.json`` (``{"format": "specfair-verify-curves", "curves": {key: costs}}``), for
the ``adaptive`` drafting policy (:class:`specfair.decoding.gamma.VerifyAwareGamma`).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from specfair.errors import SpecfairError
from specfair.schema import loads_json


@torch.inference_mode()
def _step_seconds(model, prompt: Sequence[int], k: int, repeats: int) -> float:
    from transformers import DynamicCache

    dev = model.device
    sync = torch.cuda.synchronize if dev.type == "cuda" else lambda: None
    times = []
    for _ in range(repeats):
        cache = DynamicCache(config=model.config)
        model(input_ids=torch.tensor([list(prompt)], device=dev), cache=cache, use_cache=True,
              logits_to_keep=1)
        x = torch.tensor([list(prompt[-k:])], device=dev)
        sync()
        t0 = time.perf_counter()
        model(input_ids=x, cache=cache, use_cache=True)
        sync()
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


CURVES_FILE = "verify-curves.json"  # in specfair's cache folder (models.registry.cache_root)
CURVES_FORMAT = "specfair-verify-curves"


def curve_key(target_name: str, drafter_name: str, dtype: str) -> str:
    """What a verify curve depends on: the machine (CPU, its torch threads, the GPU if any),
    the pair and the dtype."""
    from specfair.models.hardware import machine

    m = machine()
    where = m["cuda"] or f"{m['cpu']}, {m['torch_threads']} threads"
    return f"{where} | {target_name} + {drafter_name} | {dtype}"


def check_curve(entry, where: str) -> dict:
    """A cached curve ``{"verify": {k: v}, "verify_slope", "c", ...}`` if every v(k) and the
    slope are finite and the v(k) positive; a curve of any other shape is refused."""
    ok = isinstance(entry, dict) and isinstance(entry.get("verify"), dict) and entry["verify"]
    vals = list(entry["verify"].values()) + [entry.get("verify_slope"), entry.get("c")] if ok \
        else []  # fmt: skip
    if not ok or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                         and math.isfinite(v) for v in vals):  # fmt: skip
        raise SpecfairError(f"{where}: not a verify curve (finite 'verify', 'verify_slope', 'c')")
    if min(entry["verify"].values()) <= 0 or entry["c"] < 0:
        raise SpecfairError(f"{where}: a verify cost v(k) <= 0 or c < 0 is not a cost")
    return entry


def verify_curve(target, drafter, prompt: Sequence[int], key: str, path: Path | None = None,
                 ) -> dict:  # fmt: skip
    """The verify curve of ``key`` (:func:`curve_key`): read from ``path`` (default
    ``cache_root()/verify-curves.json``), else measured once (:func:`measure_costs` on
    ``prompt``) and added there. ``{"verify", "verify_slope", "c", ..., "cached": bool}``."""
    from specfair.measure.io import write_json
    from specfair.models.registry import cache_root

    path = Path(path) if path is not None else cache_root() / CURVES_FILE
    doc = {"format": CURVES_FORMAT, "curves": {}}
    if path.exists():
        try:
            doc = loads_json(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:  # unreadable, not UTF-8, not JSON
            raise SpecfairError(f"verify curves {path}: not a JSON file ({e})") from e
        if not isinstance(doc, dict) or doc.get("format") != CURVES_FORMAT \
                or not isinstance(doc.get("curves"), dict):  # fmt: skip
            raise SpecfairError(f"verify curves {path}: not a {CURVES_FORMAT} file")
    if key in doc["curves"]:
        return check_curve(doc["curves"][key], f"verify curves {path} [{key}]") | {"cached": True}
    entry = check_curve(measure_costs(target, drafter, prompt), f"measured curve [{key}]")
    doc["curves"][key] = entry
    write_json(path, doc)
    return entry | {"cached": False}
