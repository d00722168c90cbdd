"""Figures → PNG bytes (matplotlib's object API on the Agg canvas; no pyplot global state).

Every function returns ``None`` when it has nothing to draw.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from specfair.decoding.theory import expected_speedup
from specfair.report.load import BASELINE, Run, num

DPI = 110
_PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
            "#17becf", "#bcbd22"]
_TASK_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
                 "#7f7f7f", "#bcbd22", "#17becf"]


def arm_colors(run: Run) -> dict[str, str]:
    out = {BASELINE: "#7f7f7f"}
    for i, name in enumerate(run.variants):
        out[name] = _PALETTE[i % len(_PALETTE)]
    return out


def task_colors(tasks: list[str]) -> dict[str, str]:
    return {t: _TASK_PALETTE[i % len(_TASK_PALETTE)] for i, t in enumerate(tasks)}


def _new(w: float, h: float, nrows: int = 1, ncols: int = 1, **kw):
    fig = Figure(figsize=(w, h), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False, **kw)
    return fig, axes


def _png(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _yerr(df: pd.DataFrame, key: str) -> np.ndarray:
    m, lo, hi = (df[k].to_numpy(float) for k in (key, f"{key}_lo", f"{key}_hi"))
    err = np.vstack([m - lo, hi - m])
    return np.where(np.isfinite(err) & (err >= 0), err, 0.0)


def grouped_bars(ax, df: pd.DataFrame, key: str, tasks: list[str], arms: list[str],
                 colors: dict[str, str]) -> None:
    """Bars of ``key`` per task (groups) and arm (bars), CI error bars from ``key_lo/hi``."""
    width = 0.8 / max(len(arms), 1)
    x = np.arange(len(tasks))
    for i, arm in enumerate(arms):
        sub = df[df.arm == arm].set_index("task").reindex(tasks)
        ax.bar(x - 0.4 + width * (i + 0.5), sub[key].to_numpy(float), width,
               yerr=_yerr(sub, key), capsize=2, label=arm, color=colors.get(arm),
               edgecolor="white", linewidth=0.5, error_kw={"elinewidth": 0.8})
    ax.set_xticks(x, tasks, rotation=30 if len(tasks) > 4 else 0,
                  ha="right" if len(tasks) > 4 else "center")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)


def speedup_bars(run: Run, bench: pd.DataFrame) -> bytes | None:
    if bench.empty:
        return None
    tasks = [t for t in run.tasks() if t in set(bench.task)]
    arms = [a.name for a in run.arms if a.has_bench]
    fig, ax = _new(max(6.0, 1.0 + 0.45 * len(tasks) * len(arms)), 3.8)
    ax = ax[0, 0]
    grouped_bars(ax, bench, "speedup", tasks, arms, arm_colors(run))
    ax.axhline(1.0, color="black", lw=0.8, ls="--")
    ax.set_ylabel("speed-up (×, SD vs AR)")
    ax.set_title("Measured per-task speed-up (95% CI)")
    ax.legend(ncols=min(len(arms), 5), fontsize=8, loc="upper left")
    ax.set_ylim(0, max(1.15, float(np.nanmax(bench["speedup_hi"].fillna(bench["speedup"])))
                       * 1.25))
    return _png(fig)


def alpha_tau_bars(run: Run, bench: pd.DataFrame) -> bytes | None:
    if bench.empty:
        return None
    tasks = [t for t in run.tasks() if t in set(bench.task)]
    arms = [a.name for a in run.arms if a.has_bench]
    fig, axes = _new(max(8.0, 2 + 0.7 * len(tasks) * len(arms)), 3.6, 1, 2)
    colors = arm_colors(run)
    for ax, key, label in ((axes[0, 0], "alpha", "α (accepted / drafted)"),
                           (axes[0, 1], "tau", "τ (tokens per target step)")):
        grouped_bars(ax, bench, key, tasks, arms, colors)
        ax.set_title(f"Measured {label}", fontsize=10)
    axes[0, 0].set_ylim(0, 1.05)
    axes[0, 0].legend(fontsize=7, ncols=min(len(arms), 3), loc="upper left")
    return _png(fig)


def estimated_vs_measured(run: Run, rows_by_arm: dict[str, list[dict]]) -> bytes | None:
    """Scatter of estimated α (x) against measured α per verified position (y), y = x line.
    ``rows_by_arm``: :func:`specfair.measure.estimate_summary.compare_estimate_to_bench` output."""
    pts = [(a, r) for a, rows in rows_by_arm.items() for r in rows
           if math.isfinite(num(r.get("estimated_alpha"))) and math.isfinite(
               num(r.get("measured_alpha")))]
    if not pts:
        return None
    fig, ax = _new(5.4, 4.8)
    ax = ax[0, 0]
    colors = arm_colors(run)
    for arm in rows_by_arm:
        rs = [r for a, r in pts if a == arm]
        if not rs:
            continue
        x = np.array([num(r["estimated_alpha"]) for r in rs])
        y = np.array([num(r["measured_alpha"]) for r in rs])
        xerr = np.vstack([x - [num(r.get("estimated_lo")) for r in rs],
                          [num(r.get("estimated_hi")) for r in rs] - x])
        yerr = np.vstack([y - [num(r.get("lo")) for r in rs], [num(r.get("hi")) for r in rs] - y])
        xerr = np.where(np.isfinite(xerr) & (xerr >= 0), xerr, 0)
        yerr = np.where(np.isfinite(yerr) & (yerr >= 0), yerr, 0)
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", ms=5, capsize=2, lw=0.8,
                    color=colors.get(arm), label=arm)
        for xi, yi, r in zip(x, y, rs, strict=True):
            ax.annotate(r["task"], (xi, yi), textcoords="offset points", xytext=(4, -9),
                        fontsize=7, color=colors.get(arm))
    vals = [num(r[k]) for _, r in pts for k in ("estimated_alpha", "measured_alpha")]
    lo, hi = max(0.0, min(vals) - 0.08), min(1.0, max(vals) + 0.08)
    ax.plot([lo, hi], [lo, hi], color="black", lw=0.8, ls="--", label="y = x")
    ax.set_xlim(lo, hi)
    ax.set_ylim(lo, hi)
    ax.set_aspect("equal")
    ax.set_xlabel("estimated α (teacher-forced)")
    ax.set_ylabel("measured α per verified position")
    ax.set_title("Estimated vs measured acceptance (95% CI)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    return _png(fig)


def estimated_alpha_bars(run: Run, est: pd.DataFrame) -> bytes | None:
    if est.empty:
        return None
    tasks = [t for t in run.tasks() if t in set(est.task)]
    arms = [a.name for a in run.arms if a.has_estimate]
    fig, ax = _new(max(6.0, 1.0 + 0.45 * len(tasks) * len(arms)), 3.6)
    ax = ax[0, 0]
    grouped_bars(ax, est, "est_alpha", tasks, arms, arm_colors(run))
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("estimated α")
    ax.set_title("Estimated per-task acceptance α (teacher-forced, 95% CI)", fontsize=10)
    ax.legend(fontsize=8, ncols=min(len(arms), 5), loc="upper left")
    return _png(fig)


def gamma_curves(run: Run, est: pd.DataFrame, bench: pd.DataFrame) -> bytes | None:
    """Per arm: Leviathan's predicted speed-up vs γ per task (band from the α CI) and the
    measured (γ, speed-up) points with their CI."""
    arms = [a for a in run.arms if a.has_estimate and a.c is not None]
    if not arms:
        return None
    tasks = run.tasks()
    colors = task_colors(tasks)
    ncols = min(2, len(arms))
    nrows = math.ceil(len(arms) / ncols)
    fig, axes = _new(4.4 * ncols + 1.4, 3.3 * nrows, nrows, ncols, sharey=True)
    gmax = max([8] + [a.gamma + 2 for a in run.arms if a.gamma])
    g = np.arange(1, gmax + 1)
    for k, arm in enumerate(arms):
        ax = axes[k // ncols, k % ncols]
        sub = est[est.arm == arm.name]
        for _, r in sub.iterrows():
            if not math.isfinite(r.est_alpha):
                continue
            col = colors[r.task]
            ax.plot(g, expected_speedup(r.est_alpha, g, arm.c), color=col, lw=1.3,
                    label=r.task)
            if math.isfinite(r.est_alpha_lo) and math.isfinite(r.est_alpha_hi):
                ax.fill_between(g, expected_speedup(r.est_alpha_lo, g, arm.c),
                                expected_speedup(r.est_alpha_hi, g, arm.c), color=col,
                                alpha=0.12, lw=0)
        mb = bench[bench.arm == arm.name] if not bench.empty else bench
        for _, r in mb.iterrows():
            if not math.isfinite(num(r.gamma)):
                continue
            yerr = _yerr(pd.DataFrame([r]), "speedup")
            ax.errorbar([num(r.gamma)], [r.speedup], yerr=yerr, fmt="o", ms=6, capsize=3,
                        color=colors.get(r.task, "black"), mec="black", mew=0.6)
        ax.axhline(1.0, color="black", lw=0.6, ls=":")
        ax.set_title(f"{arm.name} (c = {arm.c:.3f})", fontsize=10)
        ax.set_xlabel("γ (drafted tokens per step)")
        ax.set_xticks(g)
        ax.grid(alpha=0.3)
        if k % ncols == 0:
            ax.set_ylabel("speed-up (×)")
    for k in range(len(arms), nrows * ncols):
        axes[k // ncols, k % ncols].set_visible(False)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize=8, title="task (line: "
               "predicted,\ndot: measured)", title_fontsize=7)
    return _png(fig)


def _alpha_points(log: list[dict], key: str = "alpha") -> pd.DataFrame:
    rows = [{"step": num(r.get("step")), "task": t, "alpha": num(a)}
            for r in log if isinstance(r.get(key), dict) for t, a in r[key].items()]
    return pd.DataFrame(rows)


def training_curves(run: Run) -> bytes | None:
    """Left: loss vs step for every variant; right (one panel per variant that logged
    re-estimates): per-task α vs step."""
    logs = {a.name: a.train_log for a in run.variants.values() if a.train_log}
    if not logs:
        return None
    colors = arm_colors(run)
    with_alpha = {n: _alpha_points(lg) for n, lg in logs.items()}
    with_alpha = {n: df for n, df in with_alpha.items() if not df.empty}
    ncols = 1 + len(with_alpha)
    ncols_grid = min(ncols, 2)
    nrows = math.ceil(ncols / ncols_grid)
    fig, axes = _new(4.6 * ncols_grid + 0.6, 3.3 * nrows, nrows, ncols_grid)
    ax = axes[0, 0]
    any_loss = False
    for name, lg in logs.items():
        pts = [(num(r.get("step")), num(r.get("loss"))) for r in lg if "loss" in r]
        pts = [p for p in pts if math.isfinite(p[0]) and math.isfinite(p[1])]
        if pts:
            any_loss = True
            s, loss = zip(*sorted(pts), strict=True)
            ax.plot(s, loss, color=colors.get(name), lw=1.2, label=name)
    ax.set_title("training loss", fontsize=10)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3)
    if any_loss:
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "no loss logged", ha="center", transform=ax.transAxes)
    tasks = run.tasks() or sorted({t for df in with_alpha.values() for t in df.task})
    tcol = task_colors(tasks + [t for df in with_alpha.values() for t in df.task
                                if t not in tasks])
    for k, (name, df) in enumerate(with_alpha.items(), start=1):
        ax = axes[k // ncols_grid, k % ncols_grid]
        for task, sub in df.groupby("task", sort=False):
            sub = sub.sort_values("step")
            ax.plot(sub.step, sub.alpha, marker="o", ms=3, lw=1.1, color=tcol.get(task),
                    label=task)
        ax.set_title(f"{name}: per-task α during training", fontsize=10)
        ax.set_xlabel("step")
        ax.set_ylabel("α (held-back, teacher-forced)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for k in range(ncols, nrows * ncols_grid):
        axes[k // ncols_grid, k % ncols_grid].set_visible(False)
    return _png(fig)
