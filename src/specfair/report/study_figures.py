"""The experiment report's figures, each drawn from ``summary.json`` or ``timed.json`` alone
and returned as PNG bytes (:mod:`specfair.report.study` places them): the measured speed-ups
per task and drafter, the dose-response per arm, the data dose per task."""

from __future__ import annotations

import io

import numpy as np


def _canvas(w: float, h: float, ncols: int = 1, nrows: int = 1):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(w, h), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.subplots(nrows, ncols, squeeze=False)


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def speedup_figure(t: dict) -> bytes:
    """Measured speed-up per task and drafter (bars, 95% CI) and the predicted ones (dots)."""
    names = list(t["drafters"])
    tasks = list(t["drafters"][names[0]]["tasks"])
    fig, axes = _canvas(max(7.0, 1.1 * len(tasks)), 3.6)
    ax, width = axes[0][0], 0.8 / len(names)
    for k, n in enumerate(names):
        per = t["drafters"][n]["tasks"]
        xs = np.arange(len(tasks)) + (k - (len(names) - 1) / 2) * width
        ci = [per.get(task, {}).get("speedup") or {} for task in tasks]
        m = np.array([c.get("mean", np.nan) for c in ci], float)
        err = [np.nan_to_num(np.maximum(m - [c.get("lo", np.nan) for c in ci], 0)),
               np.nan_to_num(np.maximum(np.array([c.get("hi", np.nan) for c in ci]) - m, 0))]
        bars = ax.bar(xs, m, width, yerr=err, capsize=2, label=f"{n} (measured)")
        pred = [per.get(task, {}).get("predicted") for task in tasks]
        ax.plot(xs, [np.nan if p is None else p for p in pred], "o", ms=4,
                color=bars.patches[0].get_facecolor(), markeredgecolor="k")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(np.arange(len(tasks)), tasks, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("speed-up (SD / AR)")
    ax.set_title(f"Measured speed-up per task ({t['policy']}); dots: predicted")
    ax.legend(fontsize=7, ncol=min(4, len(names)))
    return _png(fig)



def dose_figure(s: dict) -> bytes:
    """Per arm: greedy alpha per task against training tokens (bars: the paired 95% CI of the
    change against the base drafter, placed on the base value), and mean greedy alpha and mean
    sampled alpha (upper bound) with their CIs, beside the CE spread on the top-k buckets and,
    where recorded, U (Sandler et al.)."""
    tasks, arms, base = list(s["config"]["tasks"]), s["arms"], s["base"]
    fig, axes = _canvas(11, 3.4 * max(1, len(arms)), 2, max(1, len(arms)))
    for row, (name, a) in zip(axes, arms.items(), strict=False):
        rows = a["budgets"]
        xs = np.array([0] + [r["tokens"] for r in rows], float)
        for k, t in enumerate(tasks):
            b = base["tasks"][t]["greedy"]
            ys = np.array([b] + [r["tasks"][t]["greedy"] for r in rows])
            lo = np.array([b] + [b + r["tasks"][t]["d_greedy"]["lo"] for r in rows])
            hi = np.array([b] + [b + r["tasks"][t]["d_greedy"]["hi"] for r in rows])
            off = (k - len(tasks) / 2) * 0.004 * max(xs)  # keep the bars apart
            row[0].errorbar(xs + off, ys, yerr=[np.maximum(ys - lo, 0), np.maximum(hi - ys, 0)],
                            marker="o", ms=3, capsize=2, label=t)
        row[0].set_title(f"{name}: greedy alpha per task")
        row[0].set_xlabel("training tokens (prompt + supervised positions)")
        row[0].set_ylabel("greedy alpha (test)")
        for key, style, label in (("mean_greedy", "k-o", "mean greedy alpha"),
                                  ("mean_alpha", "b-o", "mean sampled alpha (upper bound)")):
            pts = [base[key]] + [r[key] for r in rows]
            ys = np.array([p["value"] for p in pts])
            err = [np.maximum(ys - [p["lo"] for p in pts], 0),
                   np.maximum([p["hi"] for p in pts] - ys, 0)]
            row[1].errorbar(xs, ys, yerr=err, fmt=style, capsize=2, label=label)
        ax2 = row[1].twinx()
        ax2.plot(xs, [base["ce_spread_topk"]["value"]] + [r["ce_spread_topk"]["value"]
                                                           for r in rows], "r--s",
                 label="CE spread (top-k)")
        if all("U_sandler" in r for r in [base, *rows]):
            ax2.plot(xs, [base["U_sandler"]["value"]] + [r["U_sandler"]["value"] for r in rows],
                     "m:^", label="U (Sandler et al.)")
        ax2.set_ylabel("CE variance across tasks", color="r")
        ax2.legend(loc="upper right", fontsize=7)
        row[1].set_title(f"{name}: mean alpha (95% CI), CE spreads")
        row[1].set_xlabel("training tokens")
        row[1].legend(loc="lower left", fontsize=7)
    axes[0][0].legend(fontsize=7, ncol=2)
    return _png(fig)


def dose_xs(d: dict, t: str, key: str, dosed: set) -> tuple[list[float], int | None]:
    """The x of task ``t``'s points in a token dose (base first) and where its own data ended:
    a collateral task sits at the dose tasks' mean dose; a dose task whose data ended
    ('short') keeps its achieved count up to the first short point and draws its later points
    at the dose the other tasks got (their growth's collateral), from index ``cut`` on (None:
    every point its own)."""
    xs = list(d[key][t])
    if t not in dosed:
        return list(np.mean([d[key][u] for u in dosed], axis=0)), None
    short = (d.get("reached") or {}).get(t) or []
    if key != "supervised_tokens" or False not in short:
        return xs, None
    cut = short.index(False) + 2  # the base and the points up to the first short one
    return xs[:cut] + list(d["dose_tokens"][cut - 1:]), cut


def data_dose_figure(s: dict) -> bytes:
    """Per task, the paired change in greedy alpha against the base drafter (95% CI bars)
    against the task's distinct training prompts and its supervised tokens."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    d, tasks = s["data_dose"], list(s["config"]["tasks"])
    by_tokens = d.get("unit") == "supervised_tokens"
    dosed = set(d.get("dose_tasks") or tasks)
    fig, axes = _canvas(11, 3.6, 2)
    ended = by_tokens and any(False in v for t, v in (d.get("reached") or {}).items()
                              if t in dosed)
    log_label = "supervised tokens (per task, log scale" + (
        ";\nhollow: the task's data ended, drawn at the others' dose)" if ended else ")")
    panels = ((axes[0][0], "supervised_tokens", log_label),
              (axes[0][1], "prompts", "distinct training prompts (per task)")) if by_tokens \
        else ((axes[0][0], "prompts", "distinct training prompts (per task)"),
              (axes[0][1], "supervised_tokens", "supervised tokens (per task)"))
    for j, (ax, key, label) in enumerate(panels):
        for t in tasks:
            cis = [p["tasks"][t]["d_greedy"] for p in d["points"]]
            ys = [0.0] + [c["value"] for c in cis]
            err = [[0.0] + [max(c["value"] - c["lo"], 0.0) for c in cis],
                   [0.0] + [max(c["hi"] - c["value"], 0.0) for c in cis]]
            xs, cut = dose_xs(d, t, key, dosed) if by_tokens else (list(d[key][t]), None)
            cut = len(xs) if cut is None else cut
            if by_tokens and j == 0:  # log x: the dose points (the base is the 0 line)
                xs, ys, err, cut = xs[1:], ys[1:], [e[1:] for e in err], cut - 1
            line = ax.errorbar(xs[:cut], ys[:cut], yerr=[e[:cut] for e in err], marker="o",
                               capsize=3, ls="-" if t in dosed else "--",
                               label=t + ("" if t in dosed else " (collateral)"))
            if cut < len(xs):
                ax.errorbar(xs[cut - 1:], ys[cut - 1:], yerr=[e[cut - 1:] for e in err],
                            marker="o", mfc="none", capsize=3, ls=":",
                            color=line[0].get_color())
        ax.axhline(0.0, color="k", lw=0.5)
        if by_tokens and j == 0:  # ticks at the dose points, no crowded minor labels
            ax.set_xscale("log")
            ticks = d.get("dose_tokens") or []
            if ticks:
                ax.xaxis.set_major_locator(FixedLocator(ticks))
                ax.xaxis.set_major_formatter(FuncFormatter(
                    lambda v, _: f"{v / 1000:g}k" if v >= 1000 else f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(label)
        ax.set_ylabel("greedy alpha change vs base")
        ax.set_title(f"{d['arm']}: data dose at fixed epochs")
    axes[0][0].legend(fontsize=7, ncol=2)
    return _png(fig)
