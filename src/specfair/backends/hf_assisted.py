"""Hugging Face assisted generation: transformers' own ``generate(assistant_model=drafter)``
with its default settings, timed (:func:`transformers_generate`, also the plain
``generate`` of ``benchmarks/engine.py``), and as a backend of
:func:`specfair.measure.bench.run_bench` (:class:`HFAssistedBackend`: the experiment's timed
stage times it against the same plain-decoding runs as specfair's drafters).

HF's defaults (transformers ``GenerationConfig``): up to ``num_assistant_tokens`` = 20 drafts a
step, schedule "constant", a draft stops once the assistant's confidence is below
``assistant_confidence_threshold`` = 0.4, a threshold HF adapts during generation and keeps
across calls; the models' generation configs are restored after every call, so each request
starts from the defaults. A pair whose vocabulary sizes differ (the same tokenizer; the tests'
tiny pair) runs HF's universal assisted decoding, which HF requires for it (the tokenizer given
for both models).

Counters: HF returns the tokens only. Every target forward of assisted generation is one
verification (the first one reads the prompt too) and every assistant forward proposes one
draft token, so ``drafted`` = the assistant's forwards and ``accepted`` = new tokens − the
target's forwards (each verification adds one token of its own); the raw counts are kept in the
record's ``engine`` entry.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from dataclasses import dataclass

from specfair.backends.base import EngineResult
from specfair.backends.hf import hf_generate
from specfair.errors import SpecfairError
from specfair.models.eos import eos_ids

NAME = "hf-assisted"
ASSISTANT_KEYS = ("num_assistant_tokens", "num_assistant_tokens_schedule",
                  "assistant_confidence_threshold")


@dataclass
class TransformersRun:
    """One ``generate`` call: new tokens, seconds around it, forward passes of each model."""

    tokens: list[int]
    wall_s: float
    target_forwards: int
    drafter_forwards: int
    universal: bool  # HF's universal assisted decoding (vocabulary sizes differ)


def sync(model) -> None:
    if model.device.type == "cuda":
        import torch

        torch.cuda.synchronize()


def _vocab(model) -> int | None:
    cfg = getattr(model, "config", None)
    text = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return getattr(text, "vocab_size", None)


def transformers_generate(target, ids: Sequence[int], max_new_tokens: int, drafter=None,
                          gamma: int | None = None, *, eos: list[int] | None = None,
                          tokenizer=None) -> TransformersRun:  # fmt: skip
    """HF's greedy ``generate``, assisted by ``drafter`` when given (``gamma``: a constant
    number of drafts with no confidence stop in place of HF's defaults). ``eos``: the ids that
    end the answer (None: the target's generation config's); ``tokenizer``: for a pair whose
    vocabulary sizes differ (HF's universal assisted decoding; without it HF refuses such a
    pair). The models' generation configs are restored afterwards (HF adapts some assistant
    settings in place)."""
    import torch

    saved = [(m, copy.deepcopy(m.generation_config)) for m in (target, drafter) if m is not None]
    counts = {"target": 0, "drafter": 0}
    hooks = [m.register_forward_pre_hook(lambda *_, k=k: counts.__setitem__(k, counts[k] + 1))
             for k, m in (("target", target), ("drafter", drafter)) if m is not None]
    universal = drafter is not None and _vocab(target) != _vocab(drafter)
    try:
        kwargs = {}
        if eos:
            kwargs["eos_token_id"] = list(eos)
        if drafter is not None:
            kwargs["assistant_model"] = drafter
            if universal and tokenizer is not None:
                kwargs |= {"tokenizer": tokenizer, "assistant_tokenizer": tokenizer}
            if gamma is not None:
                drafter.generation_config.num_assistant_tokens = gamma
                drafter.generation_config.num_assistant_tokens_schedule = "constant"
                drafter.generation_config.assistant_confidence_threshold = 0.0
        inp = torch.tensor([list(ids)], device=target.device)
        sync(target)
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = target.generate(inp, attention_mask=torch.ones_like(inp), do_sample=False,
                                  max_new_tokens=max_new_tokens, **kwargs)
        sync(target)
        secs = time.perf_counter() - t0
        return TransformersRun(out[0, len(ids):].tolist(), secs, counts["target"],
                               counts["drafter"], universal)
    finally:
        for h in hooks:
            h.remove()
        for model, cfg in saved:
            model.generation_config = cfg


def assistant_defaults(drafter) -> dict:
    """The assistant settings HF runs ``drafter`` with: its generation config's where set,
    else transformers' defaults (``GenerationConfig``)."""
    from transformers import GenerationConfig

    fallback = getattr(GenerationConfig, "_get_default_generation_params", dict)()
    own = getattr(drafter, "generation_config", None)
    return {k: v if (v := getattr(own, k, None)) is not None else fallback.get(k)
            for k in ASSISTANT_KEYS}


class HFAssistedBackend:
    """HF assisted generation with its defaults as a :class:`specfair.backends.Backend`: "sd"
    is ``target.generate(assistant_model=drafter)``, "ar" specfair's plain decoding (the
    baseline every timed record shares). Greedy only; answers end at
    :func:`specfair.models.eos.eos_ids`, as specfair's."""

    name = NAME
    proposer = "model"

    def __init__(self, target, drafter, tokenizer, target_label: str, drafter_label: str):
        self.target, self.drafter, self.tokenizer = target, drafter, tokenizer
        self.target_label, self.drafter_label = target_label, drafter_label
        self.assistant = assistant_defaults(drafter)

    def drafting(self) -> dict:
        """The run settings of its drafting, in place of a ``--policy``'s: HF's own rule."""
        return {"gamma": self.assistant["num_assistant_tokens"], "policy": "hf-defaults",
                "hf_assistant": dict(self.assistant)}

    def generate(
        self, mode: str, ids: Sequence[int], *, gamma: int, max_new_tokens: int,
        temperature: float, top_p: float, top_k: int, seed: int,
    ):  # fmt: skip
        if temperature != 0.0:
            raise SpecfairError(f"backend {NAME}: greedy decoding only (temperature 0)")
        eos = eos_ids(self.target, self.tokenizer)
        if mode == "ar":
            return hf_generate("ar", self.target, None, self.tokenizer, list(ids), gamma=gamma,
                               max_new_tokens=max_new_tokens, temperature=temperature,
                               top_p=top_p, top_k=top_k, seed=seed)  # fmt: skip
        run = transformers_generate(self.target, ids, max_new_tokens, self.drafter, eos=eos,
                                    tokenizer=self.tokenizer)
        stop = "eos" if run.tokens and run.tokens[-1] in eos else "max_tokens"
        return EngineResult(run.tokens, run.wall_s, stop_reason=stop,
                            drafted=run.drafter_forwards,
                            accepted=max(0, len(run.tokens) - run.target_forwards),
                            n_drafts=run.target_forwards,
                            extra={"target_forwards": run.target_forwards,
                                   "drafter_forwards": run.drafter_forwards,
                                   "universal": run.universal})

    def info(self) -> dict:
        import torch
        import transformers

        return {"backend": NAME, "engine": f"transformers {transformers.__version__} assisted "
                f"generation, torch {torch.__version__}", "assistant": dict(self.assistant)}

    def close(self) -> None:
        pass
