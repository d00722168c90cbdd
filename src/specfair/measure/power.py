"""Power of a paired comparison: the smallest effect a test set can detect.

Two drafters measured on the same ``n`` prompts give ``n`` paired differences ``d_i`` (greedy
alpha of the arm minus the base drafter's on a test prompt; a timed prompt's speed-up ratio
minus 1). A two-sided test at level ``1 - level`` with power ``power`` detects a mean
difference of at least

    MDE = (z_{(1 + level) / 2} + z_{power}) * sd(d) / sqrt(n)

(the normal approximation; ``sd`` with ``n - 1`` degrees of freedom): at 95 % and 80 %,
``2.8016 * sd / sqrt(n)``. Before any arm is measured, the base drafter's own per-prompt spread
is the planning estimate of ``sd(d)`` (an upper bound where the two drafters' values correlate
across prompts, as paired ones do).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist

LEVEL, POWER = 0.95, 0.8


def z_sum(level: float = LEVEL, power: float = POWER) -> float:
    """``z_{(1 + level) / 2} + z_{power}``: 1.95996 + 0.84162 = 2.80158 at 95 %, 80 %."""
    if not (0 < level < 1 and 0 < power < 1):
        raise ValueError(f"level and power must be in (0, 1), got {level}, {power}")
    z = NormalDist().inv_cdf
    return z((1 + level) / 2) + z(power)


def sd(values: Sequence[float]) -> float | None:
    """Sample standard deviation (``n - 1``); None with fewer than 2 values."""
    n = len(values)
    if n < 2:
        return None
    m = sum(values) / n
    return math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1))


def mde_of_sd(s: float | None, n: int, level: float = LEVEL,
              power: float = POWER) -> float | None:
    """The smallest detectable mean paired difference with spread ``s`` over ``n`` pairs."""
    if s is None or n < 2:
        return None
    return z_sum(level, power) * s / math.sqrt(n)


def mde(diffs: Sequence[float], level: float = LEVEL, power: float = POWER) -> dict:
    """``{"n", "sd", "mde"}`` of paired differences ``diffs`` (``sd``, ``mde`` None with fewer
    than 2)."""
    s = sd(list(diffs))
    return {"n": len(diffs), "sd": s, "mde": mde_of_sd(s, len(diffs), level, power)}


def n_needed(s: float | None, target: float, level: float = LEVEL,
             power: float = POWER) -> int | None:
    """Pairs needed for an MDE of at most ``target`` at spread ``s`` (None without ``s``)."""
    if s is None or target <= 0:
        return None
    return max(2, math.ceil((z_sum(level, power) * s / target) ** 2))
