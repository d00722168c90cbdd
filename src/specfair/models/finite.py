"""Non-finite weights: the names of a model's NaN or infinite tensors, and the refusal to write
(or convert) a model holding one. The training loops' per-step checks build on these
(:mod:`specfair.distill.guard`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from specfair.errors import SpecfairError


def nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [n for n, t in named
            if t.is_floating_point() and not bool(torch.isfinite(t.detach()).all())]


def check_model(model, what: str) -> None:
    """Refuse to write ``model`` (a module, or a per-task router with ``base``/``models``/
    ``peft``) where any weight is not finite."""
    mods = [model]
    if not isinstance(model, torch.nn.Module):
        mods = [m for m in [getattr(model, "peft", None), getattr(model, "base", None),
                            *getattr(model, "models", {}).values()] if m is not None]
    for m in mods:
        bad = nonfinite(m.named_parameters())
        if bad:
            raise SpecfairError(f"{what}: {len(bad)} weight tensor(s) are not finite (NaN or "
                                f"infinite), e.g. {bad[0]}; nothing was written")
