"""The ``hf`` backend: specfair's own transformers decoding loop (per-step records)."""

from __future__ import annotations

from collections.abc import Sequence

from specfair.decoding import autoregressive_generate, speculative_generate
from specfair.models import load_pair
from specfair.models.eos import eos_ids


def hf_generate(
    mode: str, target, drafter, tokenizer, ids: Sequence[int], *, gamma,
    max_new_tokens: int, temperature: float, top_p: float, top_k: int, seed: int | None,
    draft_threshold: float = 0.0, proposer: str = "model", index=None,
):  # fmt: skip
    """One generation by specfair's decoders: ``mode`` "ar" (the target alone) or "sd"
    (``gamma``: an int or a :class:`specfair.decoding.GammaPolicy`; ``proposer``: "model",
    "ngram" (``drafter`` unused, may be None), "hybrid", "suffix" or "suffix-hybrid" with
    ``index``, the task's :class:`specfair.decoding.suffix.SuffixIndex` or None)."""
    kw = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
              eos_token_id=eos_ids(target, tokenizer), seed=seed, tokenizer=tokenizer)
    if mode == "ar":
        return autoregressive_generate(target, ids, **kw)
    return speculative_generate(target, drafter, ids, gamma=gamma, draft_threshold=draft_threshold,
                                proposer=proposer, index=index, **kw)  # fmt: skip


class HFBackend:
    """Target and drafter as transformers modules, decoded by :mod:`specfair.decoding`."""

    name = "hf"

    def __init__(self, target, drafter, tokenizer, target_label: str, drafter_label: str):
        self.target, self.drafter, self.tokenizer = target, drafter, tokenizer
        self.target_label, self.drafter_label = target_label, drafter_label

    @classmethod
    def load(cls, target: str, drafter: str, *, dtype="auto", device="auto", kernels="auto"):
        pair = load_pair(target, drafter, dtype=dtype, device=device, kernels=kernels)
        self = cls(pair.target, pair.drafter, pair.tokenizer, pair.target_name,
                   pair.drafter_name)
        self._settings = {"dtype": dtype, "device": device, "kernels": kernels}
        return self

    def generate(
        self, mode: str, ids: Sequence[int], *, gamma: int, max_new_tokens: int,
        temperature: float, top_p: float, top_k: int, seed: int,
    ):  # fmt: skip
        return hf_generate(
            mode, self.target, self.drafter, self.tokenizer, list(ids), gamma=gamma,
            max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, top_k=top_k,
            seed=seed,
        )  # fmt: skip

    def info(self) -> dict:
        import torch
        import transformers

        return {
            "backend": self.name,
            "engine": f"specfair decoding, transformers {transformers.__version__}, "
            f"torch {torch.__version__}",
            **getattr(self, "_settings", {}),
        }

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
