"""Pure sampling functions: logits -> probabilities -> tokens (no model I/O).

Temperature 0 means greedy decoding; ``logits_to_probs`` then returns the one-hot of the argmax
(the limit of the softmax as the temperature goes to 0), but the decoders never call it on the
greedy path: they take the argmax of the logits directly.
The order of the warpers is the one of Hugging Face's ``generate``: temperature, top-k, top-p.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from specfair.errors import SpecfairError


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 0.0
    top_k: int = 0
    top_p: float = 1.0

    def __post_init__(self) -> None:
        if not self.temperature >= 0.0:
            raise SpecfairError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k < 0:
            raise SpecfairError(f"top_k must be >= 0 (0 = off), got {self.top_k}")
        if not 0.0 < self.top_p <= 1.0:
            raise SpecfairError(f"top_p must be in (0, 1], got {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0


def _float(logits: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16/fp16 logits are upcast; float64 stays float64)."""
    return logits.to(torch.promote_types(logits.dtype, torch.float32))


def fit_vocab(logits: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """Drafter logits over the target's vocabulary: cut the extra ids, or pad the missing ones
    with -inf (probability 0)."""
    width = logits.shape[-1]
    if width == vocab_size:
        return logits
    if width > vocab_size:
        return logits[..., :vocab_size]
    return torch.nn.functional.pad(logits, (0, vocab_size - width), value=float("-inf"))


def warp_logits(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """Temperature, then top-k, then top-p (nucleus) filtering over the last dimension;
    filtered-out ids get -inf. ``temperature`` must be > 0."""
    logits = _float(logits) / temperature
    if top_k > 0 and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove = cum <= 1.0 - top_p
        remove[..., -1] = False  # always keep the most likely token
        logits = logits.masked_fill(remove.scatter(-1, sorted_idx, remove), float("-inf"))
    return logits


def logits_to_probs(
    logits: torch.Tensor, temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0
) -> torch.Tensor:
    """Probabilities over the last dimension (float32 at least). Temperature 0 gives the one-hot
    of the argmax."""
    if temperature == 0.0:
        idx = logits.argmax(dim=-1, keepdim=True)
        return torch.zeros_like(_float(logits)).scatter_(-1, idx, 1.0)
    return warp_logits(logits, temperature, top_k, top_p).softmax(dim=-1)


def sample(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row of ``probs`` ([..., V] -> [...], int64)."""
    flat = probs.reshape(-1, probs.shape[-1])
    return torch.multinomial(flat, 1, generator=generator).view(probs.shape[:-1])
