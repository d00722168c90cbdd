"""Inference engines for ``specfair bench``: the same per-prompt record from each engine.

``hf`` is specfair's own transformers loop (:mod:`specfair.decoding`); ``llamacpp`` drives a
``llama-server`` it starts itself (target, or target + draft model, from GGUF files); ``vllm``
runs vLLM's offline ``LLM`` with ``speculative_config={"method": "draft_model", ...}`` (GPU).
The speed-up is always one engine with and without its drafter, on the same prompts, greedy,
one request at a time; :func:`specfair.measure.bench.run_bench` takes the backend and writes the
usual ``bench.jsonl`` (fields by backend: docs/CONTRACTS.md).

A backend is any object with the :class:`Backend` attributes. ``generate`` returns either a
:class:`specfair.decoding.GenerationResult` (per-step records, hf) or an :class:`EngineResult`
(``steps=None``: the engine's own counters, turned into record fields by
:func:`add_engine_counts`).
"""

from __future__ import annotations

from specfair.backends.base import (
    Backend,
    EngineResult,
    add_engine_counts,
    lengths_from_positions,
)
from specfair.backends.hf import HFBackend
from specfair.errors import SpecfairError

__all__ = ["BACKENDS", "Backend", "EngineResult", "add_engine_counts", "lengths_from_positions",
           "open_backend"]

BACKENDS = ("hf", "llamacpp", "vllm")


def open_backend(name: str, target: str, drafter: str | None, *, proposer: str = "model",
                 **kw) -> Backend:  # fmt: skip
    """Start the named backend (``kw`` are its constructor options). Call ``close()`` (or use it
    as a context manager) when done. The other engines' modules are imported here, on demand
    (vLLM is an optional dependency). ``proposer``: "model" (the drafter drafts); "ngram"
    (llama.cpp's own prompt lookup, ``llamacpp`` only)."""
    if name == "llamacpp":
        from specfair.backends.llamacpp import LlamaCppBackend

        return LlamaCppBackend(target, drafter, proposer=proposer, **kw)
    if proposer != "model":
        raise SpecfairError(f"backend {name} drafts with --proposer model only, got {proposer!r}")
    if name == "hf":
        return HFBackend.load(target, drafter, **kw)
    if name == "vllm":
        from specfair.backends.vllm import VLLMBackend

        return VLLMBackend(target, drafter, **kw)
    raise SpecfairError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")
