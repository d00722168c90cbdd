"""Leviathan et al. (2023) formulas for speculative decoding, as pure functions.

Model: every draft is accepted independently with probability ``alpha``; ``gamma`` drafts per
step; ``c`` = cost of one drafter forward / cost of one target forward. All functions accept
floats or numpy arrays (broadcast) and return a float for scalar inputs.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-12


def _ret(x):
    x = np.asarray(x, dtype=float)
    return float(x) if x.ndim == 0 else x


def expected_tokens_per_step(alpha, gamma):
    """E[tokens emitted per step] = (1 - alpha^(gamma+1)) / (1 - alpha) (gamma + 1 at alpha = 1),
    the bonus/correction token included (Leviathan et al., eq. 1)."""
    a = np.clip(np.asarray(alpha, dtype=float), 0.0, 1.0)
    g = np.asarray(gamma, dtype=float)
    near_one = 1.0 - a < 1e-9
    safe = np.where(near_one, 0.5, a)
    val = (1.0 - safe ** (g + 1.0)) / (1.0 - safe)
    return _ret(np.where(near_one, g + 1.0, val))


def expected_speedup(alpha, gamma, c):
    """Expected wall-time speed-up over autoregressive decoding:
    (1 - alpha^(gamma+1)) / ((1 - alpha)(gamma c + 1)) (Leviathan et al., theorem 3.8)."""
    g = np.asarray(gamma, dtype=float)
    return _ret(expected_tokens_per_step(alpha, g) / (g * np.asarray(c, dtype=float) + 1.0))


def optimal_gamma(alpha: float, c: float, gamma_max: int = 16) -> int:
    """The gamma in 1..gamma_max that maximises ``expected_speedup`` (smallest on ties)."""
    gammas = np.arange(1, int(gamma_max) + 1)
    return int(gammas[int(np.argmax(expected_speedup(float(alpha), gammas, float(c))))])


def alpha_geometric(accepted, rejections):
    """Maximum-likelihood acceptance rate from counts: accepted / (accepted + rejections), where
    ``rejections`` is the number of steps that ended on a rejected draft."""
    a = np.asarray(accepted, dtype=float)
    r = np.asarray(rejections, dtype=float)
    return _ret(np.where(a + r > 0, a / np.maximum(a + r, _EPS), 0.0))


def alpha_from_tau(tau: float, gamma: int) -> float:
    """The alpha whose ``expected_tokens_per_step(alpha, gamma)`` equals ``tau`` (bisection;
    clipped to [0, 1] for tau outside [1, gamma + 1])."""
    if tau <= 1.0:
        return 0.0
    if tau >= gamma + 1:
        return 1.0
    lo, hi = 0.0, 1.0
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if expected_tokens_per_step(mid, gamma) < tau:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)
