"""Percentile-bootstrap confidence intervals over prompts (pure numpy, vectorised, seeded).

The unit of resampling is the *prompt*: every array passed to one call holds one value per
prompt, and a resample draws prompt indices with replacement and applies them to all arrays
jointly (so a ratio of means keeps each prompt's numerator and denominator together, as in
Spec-Bench's speed-up = mean SD tokens/s / mean AR tokens/s).

Every function returns ``{"mean": point estimate on the full sample, "lo": ..., "hi": ...}``
(floats). With no prompts all three are ``nan``; with one prompt ``lo == hi == mean``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

N_RESAMPLES = 2000
LEVEL = 0.95

CI = dict  # {"mean": float, "lo": float, "hi": float}


def _nan_ci() -> CI:
    return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan")}


def bootstrap_ci(
    arrays: Sequence[Sequence[float]] | Sequence[np.ndarray],
    statistic: Callable[..., np.ndarray],
    *,
    n_resamples: int = N_RESAMPLES,
    level: float = LEVEL,
    seed: int = 0,
) -> CI:
    """Percentile bootstrap CI of ``statistic(*arrays)`` resampling the rows (prompts) jointly.

    ``statistic`` is vectorised: it receives arrays of shape ``(B, n)`` (one resample per row)
    and must return shape ``(B,)``; the point estimate is ``statistic`` on the ``(1, n)`` data.
    Resamples whose statistic is not finite (e.g. a zero denominator) are dropped.
    """
    xs = [np.asarray(a, dtype=np.float64) for a in arrays]
    if not xs:
        raise ValueError("bootstrap_ci needs at least one array")
    n = len(xs[0])
    if any(len(x) != n for x in xs):
        raise ValueError("bootstrap_ci arrays must have equal lengths (one value per prompt)")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n == 0:
        return _nan_ci()
    with np.errstate(divide="ignore", invalid="ignore"):
        point = float(np.asarray(statistic(*[x[None, :] for x in xs])).reshape(-1)[0])
        if n == 1:
            return {"mean": point, "lo": point, "hi": point}
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_resamples, n))
        stats = np.asarray(statistic(*[x[idx] for x in xs]), dtype=np.float64).reshape(-1)
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return {"mean": point, "lo": float("nan"), "hi": float("nan")}
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(stats, [alpha, 1.0 - alpha])
    return {"mean": point, "lo": float(lo), "hi": float(hi)}


def bootstrap_mean(x: Sequence[float], **kw) -> CI:
    """CI of the mean of ``x`` (one value per prompt)."""
    return bootstrap_ci([x], lambda a: a.mean(axis=1), **kw)


def bootstrap_ratio_of_means(num: Sequence[float], den: Sequence[float], **kw) -> CI:
    """CI of ``mean(num) / mean(den)`` (= Σnum / Σden), prompts resampled jointly.

    Used for the Spec-Bench speed-up (num = SD tokens/s, den = AR tokens/s of the same prompt)
    and for pooled rates such as α = Σ accepted / Σ drafted.
    """
    return bootstrap_ci([num, den], lambda a, b: a.sum(axis=1) / b.sum(axis=1), **kw)


def bootstrap_ratio_of_ratios(
    num_a: Sequence[float],
    den_a: Sequence[float],
    num_b: Sequence[float],
    den_b: Sequence[float],
    **kw,
) -> CI:
    """CI of ``(Σnum_a / Σden_a) / (Σnum_b / Σden_b)``, prompts resampled jointly.

    Used for the token-weighted speed-up (Σ SD tokens / Σ SD s) / (Σ AR tokens / Σ AR s).
    """

    def stat(a, b, c, d):
        return (a.sum(axis=1) / b.sum(axis=1)) / (c.sum(axis=1) / d.sum(axis=1))

    return bootstrap_ci([num_a, den_a, num_b, den_b], stat, **kw)
