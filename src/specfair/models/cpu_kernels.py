"""Faster CPU inference: pre-packed oneDNN weights for every ``nn.Linear``.

On a CPU without native bf16, PyTorch's default fp32 ``linear`` re-packs the weight matrix on
every call, so a forward over a few tokens (the target's verification of γ drafts) costs several
single-token steps, which caps any speculative speed-up. oneDNN can pack the weights once;
then a (γ+1)-token forward costs little more than a one-token forward. This is an inference-only
transform (no autograd) that changes results only by floating-point rounding; AR and SD use the
same transformed model, so speed-ups still compare like with like.
"""

from __future__ import annotations

import weakref

import torch
from torch import nn

from specfair.models.memory import file_mappings, page_out, page_out_ranges


def packed_linear_available() -> bool:
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        w = torch.randn(4, 4)
        torch.ops.mkldnn._linear_pointwise(
            torch.randn(1, 4), torch.ops.mkldnn._reorder_linear_weight(w, 1), None, "none", [], ""
        )
    except (RuntimeError, AttributeError):
        return False
    return True


class PackedLinear(nn.Module):
    """``nn.Linear`` replacement holding oneDNN-packed fp32 weights (inference only)."""

    def __init__(self, linear: nn.Linear, batch_hint: int = 1, keep_weight: bool = False) -> None:
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        w = linear.weight.detach().to(torch.float32).contiguous()
        self.packed = torch.ops.mkldnn._reorder_linear_weight(w, batch_hint)
        # The output head keeps its plain weight too: distillation computes the target's
        # logits chunk by chunk from hidden states and this matrix.
        self.weight = w if keep_weight else None
        self.bias = None if linear.bias is None else linear.bias.detach().float().contiguous()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, self.bias, "none", [], "")

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, packed"


def pack_linears(model: nn.Module, batch_hint: int = 1, shared: dict | None = None) -> int:
    """Replace every fp32 ``nn.Linear`` of ``model`` (on CPU) by a :class:`PackedLinear`, in
    place; returns how many were replaced. Tied weights are unaffected (the embedding keeps its
    own tensor; a tied head gets its own packed copy). The output head keeps its plain
    ``weight`` as well (used by distillation).

    ``shared``: one dict for the calls on several models that share modules (per-task drafters
    sharing their frozen layers, :func:`specfair.drafters.router.copy_top`): a linear they share
    is packed once and every model gets that packed copy.

    A weight read from a memory-mapped file (safetensors) gives its pages back once packed (a
    tied head's too: the embedding reads only its rows back): without this the whole file stays
    resident beside its packed copy, twice the model."""
    shared = {} if shared is None else shared
    mapped, paged = file_mappings(), []
    n = 0
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if not isinstance(child, nn.Linear):
                continue
            ref, packed = shared.get(id(child), (None, None))
            if ref is not None and ref() is child:  # packed already, for a model sharing it
                setattr(module, child_name, packed)
                n += 1
            elif child.weight.device.type == "cpu" and child.weight.dtype == torch.float32:
                packed = PackedLinear(child, batch_hint, child is head)
                shared[id(child)] = (weakref.ref(child), packed)
                setattr(module, child_name, packed)
                paged += page_out([child.weight], mapped)
                n += 1
    page_out_ranges(paged)  # again: pages read a moment ago may not have been reclaimable
    model.specfair_packed = n > 0
    return n
