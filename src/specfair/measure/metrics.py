"""Speed-up, acceptance and disparity metrics: their definitions, and the disparity and
Leviathan functions (pure; inputs are plain sequences). Per-task speed-up, α and τ with their
bootstrap CIs are computed by :mod:`specfair.measure.bench_summary` (ratios of sums over
prompts).

Notation: a task has prompts i = 1..n. For prompt i, the autoregressive (AR) run produces
``T_i^AR`` new tokens in ``t_i^AR`` seconds and the speculative (SD) run ``T_i^SD`` tokens in
``t_i^SD`` seconds (wall clock, prefill included); ``r_i = T_i / t_i`` is its tokens/s.

* Speed-up (Spec-Bench definition, the headline number)::

      S = mean_i(r_i^SD) / mean_i(r_i^AR)

* Token-weighted speed-up (each generated token counts once; long answers weigh more)::

      S_tok = (Σ_i T_i^SD / Σ_i t_i^SD) / (Σ_i T_i^AR / Σ_i t_i^AR)

* Acceptance rate, pooled over all draft steps of all prompts::

      α = Σ accepted / Σ drafted

* Mean accepted length per target forward (verify step), including the bonus/correction token::

      τ = Σ_steps accepted_len / #steps      (1 ≤ accepted_len ≤ γ + 1)

Disparity over the per-task speed-ups ``S_1..S_K`` (K tasks, μ = mean_k S_k):

* worst task ``argmin_k S_k`` and its speed-up ``min_k S_k``;
* ``max_min_ratio = max_k S_k / min_k S_k`` (1 = perfectly fair);
* coefficient of variation ``cv = σ / μ`` with the population std ``σ = sqrt(mean_k (S_k - μ)²)``;
* Gini coefficient ``G = MD / (2μ)`` with the mean absolute difference over all ordered pairs
  ``MD = (1/K²) Σ_j Σ_k |S_j - S_k|`` (0 = equal, → 1 concentrated);
* cross-entropy spread (Sandler et al., 2025): the population variance across tasks of the
  drafter-vs-target cross-entropy ``CE_k = mean over positions of H(p, q) = -Σ_x p(x) log q(x)``::

      ce_spread = (1/K) Σ_k (CE_k - mean_j CE_j)²

Leviathan et al. (2023) predictions (computed by :mod:`specfair.decoding.theory`), for an
i.i.d. per-token acceptance probability α, γ drafted tokens per step and cost ratio
``c = time(drafter forward) / time(target forward)``::

      E[τ] = (1 - α^(γ+1)) / (1 - α)                 (= γ + 1 when α = 1)
      E[S] = (1 - α^(γ+1)) / ((1 - α)(γ c + 1))      (= E[τ] / (γ c + 1))
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from specfair.decoding.theory import expected_speedup as _speedup
from specfair.decoding.theory import expected_tokens_per_step


def _arr(x: Sequence[float]) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def coefficient_of_variation(values: Sequence[float]) -> float:
    """``σ / μ`` with the population standard deviation."""
    v = _arr(values)
    if v.size == 0 or v.mean() == 0:
        return float("nan")
    return float(v.std(ddof=0) / v.mean())


def gini(values: Sequence[float]) -> float:
    """Gini coefficient ``(1/K²) Σ_j Σ_k |x_j - x_k| / (2 μ)``."""
    v = _arr(values)
    if v.size == 0 or v.mean() == 0:
        return float("nan")
    mad = np.abs(v[:, None] - v[None, :]).mean()
    return float(mad / (2.0 * v.mean()))


def population_variance(values: Sequence[float]) -> float:
    v = _arr(values)
    return float(v.var(ddof=0)) if v.size else float("nan")


def ce_spread(ce_by_task: Mapping[str, float] | Sequence[float]) -> float:
    """Sandler et al. (2025) unfairness: population variance across tasks of the mean CE."""
    vals = list(ce_by_task.values()) if isinstance(ce_by_task, Mapping) else list(ce_by_task)
    return population_variance(vals)


def disparity(speedups: Mapping[str, float]) -> dict:
    """Disparity block over per-task speed-ups ``{task: S_k}`` (nan tasks are ignored).

    Returns ``{"worst_task", "worst_speedup", "best_task", "best_speedup", "max_min_ratio",
    "cv", "gini", "n_tasks"}``.
    """
    items = [(k, float(v)) for k, v in speedups.items() if v is not None and math.isfinite(v)]
    if not items:
        return {
            "worst_task": None,
            "worst_speedup": float("nan"),
            "best_task": None,
            "best_speedup": float("nan"),
            "max_min_ratio": float("nan"),
            "cv": float("nan"),
            "gini": float("nan"),
            "n_tasks": 0,
        }
    worst = min(items, key=lambda kv: kv[1])
    best = max(items, key=lambda kv: kv[1])
    vals = [v for _, v in items]
    return {
        "worst_task": worst[0],
        "worst_speedup": worst[1],
        "best_task": best[0],
        "best_speedup": best[1],
        "max_min_ratio": best[1] / worst[1] if worst[1] > 0 else float("nan"),
        "cv": coefficient_of_variation(vals),
        "gini": gini(vals),
        "n_tasks": len(items),
    }


# ----------------------------------------------------------------- Leviathan et al. (2023)


def expected_tau(alpha: float, gamma: int) -> float:
    """``E[τ] = (1 - α^(γ+1)) / (1 - α)``; the limit γ + 1 at α = 1.

    Delegates to :func:`specfair.decoding.theory.expected_tokens_per_step`."""
    if alpha is None or not math.isfinite(alpha):
        return float("nan")

    return float(expected_tokens_per_step(alpha, gamma))


def expected_speedup(alpha: float, gamma: int, c: float) -> float:
    """``E[S] = (1 - α^(γ+1)) / ((1 - α)(γ c + 1))``.

    Delegates to :func:`specfair.decoding.theory.expected_speedup`."""
    if alpha is None or c is None or not (math.isfinite(alpha) and math.isfinite(c)):
        return float("nan")

    return float(_speedup(alpha, gamma, c))
