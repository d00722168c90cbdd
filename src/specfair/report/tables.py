"""The report's tables (as :class:`~specfair.report.doc.Table`; Markdown via ``doc.table_md``)."""

from __future__ import annotations

import math

import pandas as pd

from specfair.report import compare
from specfair.report.doc import Table
from specfair.report.load import ARM_FILES, Run, num

DASH = "–"


def fmt(x, digits: int = 2, suffix: str = "") -> str:
    x = num(x)
    return f"{x:.{digits}f}{suffix}" if math.isfinite(x) else DASH


def fmt_ci(mean, lo, hi, digits: int = 2, suffix: str = "") -> str:
    s = fmt(mean, digits, suffix)
    if s != DASH and math.isfinite(num(lo)) and math.isfinite(num(hi)):
        s += f" [{num(lo):.{digits}f}, {num(hi):.{digits}f}]"
    return s


def fmt_pct(p) -> str:
    p = num(p)
    return f"{p:+.1f}%" if math.isfinite(p) else DASH


def availability_table(run: Run) -> Table:
    rows = []
    for arm in run.arms:
        cells = ["yes" if arm.present.get(f) else "**missing**" for f in ARM_FILES]
        if arm.is_baseline:
            cells[-1] = "n/a" if not arm.present.get(ARM_FILES[-1]) else "yes"
        rows.append([arm.name] + cells)
    return Table(["arm"] + list(ARM_FILES), rows, "Files found in the run directory",
                 ["l"] + ["l"] * len(ARM_FILES))


def speedup_table(run: Run, bench: pd.DataFrame) -> Table | None:
    """Rows: tasks (+ mean over tasks); columns: arms; cells ``S [95% CI]``."""
    if bench.empty:
        return None
    arms = [a.name for a in run.arms if a.has_bench]
    tasks = list(dict.fromkeys(bench["task"]))
    rows = []
    for t in tasks:
        row = [t]
        for a in arms:
            sel = bench[(bench.arm == a) & (bench.task == t)]
            row.append(fmt_ci(*sel[["speedup", "speedup_lo", "speedup_hi"]].iloc[0], 2, "×")
                       if len(sel) else DASH)
        rows.append(row)
    means = [compare.speedup_disparity(a) for a in run.arms if a.has_bench]
    rows.append(["**mean over tasks**"] + [fmt(d["mean"], 2, "×") for d in means])
    gam = ", ".join(f"{a.name}: γ={a.gamma}" for a in run.arms if a.has_bench)
    return Table(["task"] + arms, rows,
                 f"Measured speed-up (SD ÷ AR tokens/s) with 95% bootstrap CI ({gam})")


def alpha_tau_table(run: Run, bench: pd.DataFrame, est: pd.DataFrame) -> Table | None:
    """Long table: task × arm with measured α, α per verified position, τ, and estimated α."""
    if bench.empty and est.empty:
        return None
    keys = list(dict.fromkeys(list(zip(bench.get("task", []), bench.get("arm", []), strict=True))
                              + list(zip(est.get("task", []), est.get("arm", []), strict=True))))
    order = {t: i for i, t in enumerate(run.tasks())}
    arm_order = {a.name: i for i, a in enumerate(run.arms)}
    keys.sort(key=lambda ta: (order.get(ta[0], 99), arm_order.get(ta[1], 99)))
    rows = []
    for task, arm in keys:
        b = bench[(bench.task == task) & (bench.arm == arm)] if not bench.empty else bench
        e = est[(est.task == task) & (est.arm == arm)] if not est.empty else est
        rb = b.iloc[0] if len(b) else None
        re_ = e.iloc[0] if len(e) else None
        meas = rb is not None
        rows.append([
            task, arm,
            fmt_ci(rb.alpha, rb.alpha_lo, rb.alpha_hi, 3) if meas else DASH,
            fmt_ci(rb.alpha_tested, rb.alpha_tested_lo, rb.alpha_tested_hi, 3) if meas else DASH,
            fmt_ci(rb.tau, rb.tau_lo, rb.tau_hi, 2) if meas else DASH,
            fmt_ci(re_.est_alpha, re_.est_alpha_lo, re_.est_alpha_hi, 3)
            if re_ is not None else DASH,
            fmt(re_.ce, 3) if re_ is not None else DASH,
        ])
    return Table(
        ["task", "arm", "α accepted/drafted", "α per verified position", "τ tokens/step",
         "α estimated", "CE"],
        rows,
        "Acceptance: measured α (pooled over draft steps), α per verified position (comparable "
        "with the teacher-forced estimate), τ = tokens per target step (bonus token incl.), "
        "the estimated α and the drafter's cross-entropy; 95% CIs in brackets",
        ["l", "l", "r", "r", "r", "r", "r"],
    )


def _disparity_table(run: Run, fn, metric_defs, worst_key: str, caption: str,
                     absent: str) -> Table | None:
    base = fn(run.baseline) if run.baseline else None
    rows = []
    for arm in run.arms:
        d = fn(arm)
        if d is None:
            rows.append([arm.name, absent] + [""] * len(metric_defs))
            continue
        row = [arm.name, str(d.get("worst_task"))]
        for key, _label, _hib in metric_defs:
            digits = 4 if key == "ce_spread" else (3 if key in ("cv", "gini") else 2)
            if worst_key == "worst_alpha" and key in ("worst_alpha", "mean"):
                digits = 3
            cell = fmt(d.get(key), digits)
            if base is not None and not arm.is_baseline and cell != DASH:
                cell += f" ({fmt_pct(compare.rel_change(num(base.get(key)), num(d.get(key))))})"
            row.append(cell)
        rows.append(row)
    if all(r[1] == absent for r in rows):
        return None
    return Table(["arm", "worst task"] + [lab for _, lab, _ in metric_defs], rows, caption,
                 ["l", "l"] + ["r"] * len(metric_defs))


def speedup_disparity_table(run: Run) -> Table | None:
    return _disparity_table(
        run, compare.speedup_disparity, compare.SPEEDUP_METRICS, "worst_speedup",
        "Disparity of the measured per-task speed-ups; in brackets the change relative to the "
        "baseline (worst-task and mean speed-up: higher is better; max/min, CV, Gini and CE "
        "spread: lower is fairer)", "not benchmarked")


def alpha_disparity_table(run: Run) -> Table | None:
    return _disparity_table(
        run, compare.alpha_disparity, compare.ALPHA_METRICS, "worst_alpha",
        "Disparity of the estimated per-task acceptance α (teacher-forced; available for "
        "variants that were not benchmarked); change relative to the baseline in brackets",
        "not estimated")


def kv_table(title: str, d: dict, limit: int = 24) -> Table | None:
    """Scalar entries of ``d`` (one level of nesting flattened with dots)."""
    rows = []
    for k, v in d.items():
        if isinstance(v, dict):
            for k2, v2 in v.items():
                if not isinstance(v2, dict | list):
                    rows.append([f"{k}.{k2}", str(v2)])
        elif isinstance(v, list):
            if all(not isinstance(x, dict | list) for x in v):
                rows.append([k, ", ".join(map(str, v))])
        else:
            rows.append([k, str(v)])
    if not rows:
        return None
    more = len(rows) - limit
    rows = rows[:limit] + ([[f"… {more} more", ""]] if more > 0 else [])
    return Table(["key", "value"], rows, title, ["l", "l"])
