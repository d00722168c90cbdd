"""Tidy per-task frames and the before/after disparity comparison (metric functions come from
:mod:`specfair.measure.metrics`; nothing is re-derived here except means and % changes).

Two views of disparity per arm:

* **measured** (needs ``bench_summary.json``): over the per-task measured speed-ups S_k;
* **acceptance** (needs ``estimate_summary.json``): over the per-task estimated α_k (the α
  that matches the decoding: greedy agreement at temperature 0, else the sampling α), so an
  arm that was only estimated still gets a before/after.

Both carry ``ce_spread`` (variance across tasks of the mean drafter CE, Sandler et al. 2025)
from the arm's estimate summary.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from specfair.measure import metrics
from specfair.report.load import Arm, Run, finite, num

# (key, label, higher_is_better)
SPEEDUP_METRICS = (
    ("worst_speedup", "worst-task speed-up", True),
    ("mean", "mean speed-up", True),
    ("max_min_ratio", "max/min", False),
    ("cv", "CV", False),
    ("gini", "Gini", False),
    ("ce_spread", "CE spread", False),
)
ALPHA_METRICS = (
    ("worst_alpha", "worst-task α", True),
    ("mean", "mean α", True),
    ("max_min_ratio", "max/min", False),
    ("cv", "CV", False),
    ("gini", "Gini", False),
    ("ce_spread", "CE spread", False),
)


def ci(block: Mapping | None) -> tuple[float, float, float]:
    """(mean, lo, hi) of a ``{"mean", "lo", "hi"}`` block (nan where absent)."""
    if not isinstance(block, Mapping):
        return (num(block), float("nan"), float("nan"))
    return num(block.get("mean")), num(block.get("lo")), num(block.get("hi"))


def alpha_key(arm: Arm | None) -> str:
    """The estimated α that the decoding sees: ``greedy_alpha`` when the arm's benchmark decodes
    greedily (or has no benchmark: the experiment decodes greedily), ``alpha`` when it samples.
    The estimate's own ``meta.temperature`` is the temperature of p and q inside α, not the
    decoding temperature, so it does not decide."""
    meta = ((arm.bench_summary if arm is not None else None) or {}).get("meta", {})
    t = num(meta.get("temperature"))
    return "alpha" if finite(t) and t > 0 else "greedy_alpha"


def bench_frame(run: Run) -> pd.DataFrame:
    """Long frame: arm, task, n, speedup(+_lo,_hi), alpha, alpha_tested, tau (each ±CI)."""
    rows = []
    for arm in run.arms:
        for task, b in ((arm.bench_summary or {}).get("tasks") or {}).items():
            row = {"arm": arm.name, "task": task, "n": b.get("n"), "gamma": arm.gamma}
            for key in ("speedup", "speedup_tokw", "alpha", "alpha_tested", "tau"):
                row[key], row[f"{key}_lo"], row[f"{key}_hi"] = ci(b.get(key))
            row["ar_tps"], row["sd_tps"] = num(b.get("ar_tps")), num(b.get("sd_tps"))
            rows.append(row)
    return pd.DataFrame(rows)


def estimate_frame(run: Run) -> pd.DataFrame:
    """Long frame: arm, task, n, est_alpha (the decoding-matched α, ±CI), alpha, greedy_alpha,
    ce, kl, c, gamma and the predicted speed-up at the estimate's γ."""
    rows = []
    for arm in run.arms:
        s = arm.estimate_summary or {}
        key = alpha_key(arm)
        g = s.get("meta", {}).get("gamma")
        for task, b in (s.get("tasks") or {}).items():
            row = {"arm": arm.name, "task": task, "n": b.get("n"), "alpha_key": key,
                   "c": arm.c, "gamma": g}
            row["est_alpha"], row["est_alpha_lo"], row["est_alpha_hi"] = ci(b.get(key))
            for k in ("alpha", "greedy_alpha", "ce", "kl"):
                row[k], row[f"{k}_lo"], row[f"{k}_hi"] = ci(b.get(k))
            pred_key = "predicted" if key == "greedy_alpha" else "predicted_sampling"
            pred = (b.get(pred_key) or b.get("predicted") or {}).get(str(g), {})
            row["pred_speedup"] = num(pred.get("speedup"))
            rows.append(row)
    return pd.DataFrame(rows)


def ce_spread_of(arm: Arm) -> float:
    tasks = (arm.estimate_summary or {}).get("tasks") or {}
    ce = {t: ci(b.get("ce"))[0] for t, b in tasks.items()}
    ce = {t: v for t, v in ce.items() if math.isfinite(v)}
    return metrics.ce_spread(ce) if ce else float("nan")


def _disp(values: Mapping[str, float]) -> dict:
    vals = {t: v for t, v in values.items() if math.isfinite(v)}
    d = metrics.disparity(vals)
    d["mean"] = sum(vals.values()) / len(vals) if vals else float("nan")
    return d


def speedup_disparity(arm: Arm) -> dict | None:
    """Disparity over the measured per-task speed-ups (None without a bench summary)."""
    if not arm.has_bench:
        return None
    tasks = arm.bench_summary["tasks"]
    d = _disp({t: ci(b.get("speedup"))[0] for t, b in tasks.items()})
    d["mean_alpha"] = _mean([ci(b.get("alpha"))[0] for b in tasks.values()])
    d["ce_spread"] = ce_spread_of(arm)
    return d


def alpha_disparity(arm: Arm) -> dict | None:
    """The same metrics over the per-task estimated α (None without an estimate summary)."""
    if not arm.has_estimate:
        return None
    key = alpha_key(arm)
    tasks = arm.estimate_summary["tasks"]
    d = _disp({t: ci(b.get(key))[0] for t, b in tasks.items()})
    d["worst_alpha"], d["best_alpha"] = d.pop("worst_speedup"), d.pop("best_speedup")
    d["ce_spread"] = ce_spread_of(arm)
    d["alpha_key"] = key
    return d


def _mean(xs) -> float:
    xs = [x for x in xs if math.isfinite(x)]
    return sum(xs) / len(xs) if xs else float("nan")


def rel_change(before: float, after: float) -> float:
    """(after − before) / |before| in %, nan when undefined."""
    if not (math.isfinite(before) and math.isfinite(after)) or before == 0:
        return float("nan")
    return 100.0 * (after - before) / abs(before)


def task_value(arm: Arm | None, task: str | None, kind: str = "speedup") -> tuple:
    """(mean, lo, hi) of a task's measured ``kind`` in ``arm``'s bench summary."""
    if arm is None or task is None or not arm.has_bench:
        return (float("nan"),) * 3
    return ci(arm.bench_summary["tasks"].get(task, {}).get(kind))


def task_estimate(arm: Arm | None, task: str | None) -> tuple:
    if arm is None or task is None or not arm.has_estimate:
        return (float("nan"),) * 3
    key = alpha_key(arm)
    return ci(arm.estimate_summary["tasks"].get(task, {}).get(key))


def best_variant(run: Run) -> tuple[str | None, str]:
    """(name, criterion): the variant with the highest measured worst-task speed-up (ties:
    higher mean speed-up); without any benchmarked variant, the highest estimated worst-task
    α (ties: higher mean α)."""
    measured = [(a.name, speedup_disparity(a)) for a in run.variants.values() if a.has_bench]
    measured = [(n, d) for n, d in measured if finite(d["worst_speedup"])]
    if measured:
        name = max(measured, key=lambda nd: (nd[1]["worst_speedup"], num(nd[1]["mean"])))[0]
        return name, ("highest measured worst-task speed-up (ties broken by mean speed-up)")
    est = [(a.name, alpha_disparity(a)) for a in run.variants.values() if a.has_estimate]
    est = [(n, d) for n, d in est if finite(d["worst_alpha"])]
    if est:
        name = max(est, key=lambda nd: (nd[1]["worst_alpha"], num(nd[1]["mean"])))[0]
        return name, ("highest estimated worst-task acceptance α — no variant was benchmarked, "
                      "so this is a prediction, not a measured speed-up")
    return None, "no variant has a benchmark or an estimate"
