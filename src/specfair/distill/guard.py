"""Training stops at its first non-finite number, and no drafter with non-finite weights is ever
written.

Every training loop (:mod:`specfair.distill.trainer`, :func:`specfair.distill.topn.train_until`,
which :mod:`specfair.distill.cached` and the study drive) checks, per optimizer step, the loss
and the gradient norm before the update (:func:`check_step`) and the trained weights after it
(:func:`check_weights`), so the checkpoint written after a step always holds finite weights. The
exports check the weights once more before anything is written
(:func:`specfair.models.finite.check_model`).
"""

from __future__ import annotations

import math
from pathlib import Path

from specfair.errors import SpecfairError
from specfair.models.finite import nonfinite


def _kept(checkpoint: Path | None) -> str:
    if checkpoint is None:
        return "no checkpoint of this run to keep; no drafter was written"
    return f"kept the last good checkpoint at {checkpoint}; no drafter was written"


def check_step(step: int, loss: float, grad_norm: float | None, lr: float,
               checkpoint: Path | None = None) -> None:
    """Refuse optimizer step ``step`` (1-based) where its loss or gradient norm is not finite:
    one :class:`SpecfairError` naming the step, the learning rate and the checkpoint kept."""
    if not math.isfinite(loss):
        what = f"loss is {loss}"
    elif grad_norm is not None and not math.isfinite(grad_norm):
        what = f"gradient norm is {grad_norm}"
    else:
        return
    raise SpecfairError(f"training diverged at step {step}: {what} (lr={lr:g}; try a lower "
                        f"learning rate) — {_kept(checkpoint)}")


def check_weights(step: int, named, lr: float, checkpoint: Path | None = None) -> None:
    """Refuse the update of step ``step`` where it left a non-finite weight."""
    bad = nonfinite(named)
    if bad:
        raise SpecfairError(f"training diverged at step {step}: {len(bad)} weight tensor(s) "
                            f"not finite after the update, e.g. {bad[0]} (lr={lr:g}; try a "
                            f"lower learning rate) — {_kept(checkpoint)}")
