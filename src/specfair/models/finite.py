"""Non-finite weights: the names of a model's NaN or infinite tensors, and the refusal to write
(or convert) a model holding one. The training loops' per-step checks build on these
(:mod:`specfair.distill.guard`)."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from specfair.errors import SpecfairError


def finite(t: torch.Tensor) -> bool:
    """Whether every element of ``t`` is finite. Exact, and fast where it is: a sum that
    meets a NaN or an infinity is not finite, so a finite sum proves every element finite (on
    CPU ~20x faster than ``isfinite(t).all()``, and no bool copy of ``t``); a sum that is not
    finite (or overflowed) is checked element by element."""
    t = t.detach()
    return bool(torch.isfinite(t.sum())) or bool(torch.isfinite(t).all())


def nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> list[str]:
    """Names of the floating-point tensors holding a NaN or an infinity."""
    return [n for n, t in named if t.is_floating_point() and not finite(t)]


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
