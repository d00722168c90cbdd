"""The study report's sections for the metrics of issue 18, as Markdown lines from
``summary.json`` (:mod:`specfair.study.summary` computes every number): the primary metrics
(greedy alpha, predicted speed-up) named and tabled with paired CIs, sampled-alpha bounds,
exact alpha and Sandler et al.'s U, spreads across tasks, dose-response curves with slope CIs
and the data dose (table, figure, verdict). Nothing here computes a statistic."""

from __future__ import annotations

from pathlib import Path

from specfair.measure.replay import POLICIES


def _fmt(ci: dict, nd: int = 3) -> str:
    return f"{ci['value']:+.{nd}f} [{ci['lo']:+.{nd}f}, {ci['hi']:+.{nd}f}]"

METRIC_NOTES = [
    "Metrics, by name:",
    "- **greedy alpha** (primary): the share of response positions where the drafter's argmax "
    "is the target's (exact: the target's argmax is its stored top-1); what greedy decoding "
    "accepts, and what no top-k bucket can inflate;",
    "- **predicted speed-up** (primary): the headline policy ({policy}) replayed with greedy "
    "acceptance on the teacher-forced passes, priced with the measured c and v(k);",
    "- **sampled alpha [lower, upper]**: sum of min(p, q) over the target's top-k tokens only "
    "(lower bound) and with the residual bucket min(p_rest, q_rest) added (upper bound, what the "
    "loss's buckets see); the truth lies between, and the gap is at most the task's **residual "
    "mass** (1 - the target's top-k probability);",
    "- **spread across tasks**: max/min ratio and max - min of greedy alpha and of the predicted "
    "speed-up;",
    "- **U (Sandler et al.)**: the population variance across tasks of the drafter's mean "
    "cross-entropy to the target over the full vocabulary (Sandler et al. 2025, "
    "arXiv:2510.02128, as its reviews describe the metric: the variance of the per-task "
    "drafter-verifier cross-entropy), from the target's stored final hidden states and output "
    "head; the fkl loss lowers each task's CE directly, so U is an objective-adjacent quantity, "
    "not an outcome;",
    "- **exact sampled alpha**: sum of min(p, q) over the full vocabulary, from the same "
    "states; it lies within the bounds above;",
    "- **CE spread (top-k)**: the same variance on the top-k + 1 buckets: a lower bound of each "
    "task's CE and the quantity the fkl loss minimizes, so it falls by construction; shown for "
    "runs without the full-vocabulary states, never as U.",
    "",
    "CIs: 95% percentile bootstrap, paired against the base drafter; where an arm was trained "
    "with several seeds (the largest budget), each replicate draws seeds with replacement, then "
    "prompt groups (hierarchical). A change is claimed only where its CI excludes 0 (marked *).",
    ""]


def _mark(ci: dict, nd: int = 3) -> str:
    return _fmt(ci, nd) + ("*" if ci.get("claimed") else "")


def primary_tables(s: dict) -> list[str]:
    """Greedy alpha and predicted speed-up per task, paired changes with CIs; sampled-alpha
    bounds and residual mass; spreads across tasks."""
    tasks = list(s["config"]["tasks"])
    base = s["base"]
    rows = [r for a in s["arms"].values() for r in a["budgets"]]
    out = ["## Primary: greedy alpha and predicted speed-up per task", ""]
    out += [x.format(policy=POLICIES[0].label) for x in METRIC_NOTES]
    out += ["| task | base greedy | base speed-up | sampled alpha [lower, upper] | exact | "
            "residual mass |", "| --- | --- | --- | --- | --- | --- |"]
    for t in tasks:
        r = base["tasks"][t]
        b = r.get("alpha_bounds")
        exact = f"{r['alpha_exact']:.3f}" if "alpha_exact" in r else "-"
        out.append(f"| {t} | {r['greedy']:.3f} | {r['speedup']['value']:.2f}x | "
                   + (f"[{b[0]:.3f}, {b[1]:.3f}]" if b else "upper only: "
                      f"{r['alpha']:.3f}") + f" | {exact} | {r['resid']:.4f} |")
    if "U_sandler" in base:
        out += ["", f"U (Sandler et al., full-vocabulary CE variance across tasks): base "
                f"{base['U_sandler']['value']:.4g}"]
        for r in rows:
            u = r["U_sandler_change"]
            out.append(f"- {r['arm']} {r['budget']:.2f}: {r['U_sandler']['value']:.4g}, change "
                       f"{u['value']:+.0%} [{u['lo']:+.0%}, {u['hi']:+.0%}]"
                       + "*" * u["claimed"])
    for key, label, nd in (("d_greedy", "greedy alpha", 3), ("d_speedup", "predicted speed-up",
                                                              2)):
        out += ["", f"Paired change in {label} against the base drafter:", "",
                "| arm | budget | seeds | " + " | ".join(tasks) + " |",
                "|" + " --- |" * (len(tasks) + 3)]
        for r in rows:
            out.append(f"| {r['arm']} | {r['budget']:.2f} | {len(r.get('seeds', [0]))} | "
                       + " | ".join(_mark(r["tasks"][t][key], nd) for t in tasks) + " |")
    out += ["", "Paired change in sampled alpha, lower / upper bound (the loss's residual bucket "
            "can move only the upper one):", "",
            "| arm | budget | " + " | ".join(tasks) + " |", "|" + " --- |" * (len(tasks) + 2)]
    for r in rows:
        if all("d_alpha_lo" in r["tasks"][t] for t in tasks):
            short = lambda d: f"{d['value']:+.3f}" + "*" * d["claimed"]  # noqa: E731
            out.append(f"| {r['arm']} | {r['budget']:.2f} | " + " | ".join(
                f"{short(r['tasks'][t]['d_alpha_lo'])} / {short(r['tasks'][t]['d_alpha'])}"
                for t in tasks) + " |")
    out += ["", "Spread across tasks (value, and paired change against the base):", "",
            "| drafter | greedy max/min | greedy max-min | speed-up max/min | "
            "speed-up max-min |", "| --- | --- | --- | --- | --- |"]
    def cell(d: dict, k: str, paired: bool) -> str:
        return f"{d[k]['value']:.3f}" + (f" ({_mark(d['d_' + k])})" if paired else "")

    for r in [base] + rows:
        g, sp = r["greedy_spread"], r["speedup_spread"]
        out.append(f"| {r['arm']} {r['budget']:.2f} | {cell(g, 'max_min', r is not base)} | "
                   f"{cell(g, 'range', r is not base)} | {cell(sp, 'max_min', r is not base)} | "
                   f"{cell(sp, 'range', r is not base)} |")
    return out + [""]


def curve_lines(c: dict | None, what: str) -> list[str]:
    """One line per task: a curve's slope with its CI and the value fitted at the projection
    limit."""
    if not c:
        return []
    limit = c["limit"]
    out = [f"  - {what} (slope [95% CI]; fitted at {limit:g}x the largest measured "
           "dose, nothing further):"]
    for t, v in c["tasks"].items():
        f = v["fitted_at_limit"]
        far = limit * v["max_dose"]
        out.append(f"    - {t}: {_mark(v['slope'], 4)}; at {far:,.0f}: {f['value']:.3f} "
                   f"[{f['lo']:.3f}, {f['hi']:.3f}]")
    if "mean" in c:
        out.append(f"    - mean over tasks: {_mark(c['mean']['slope'], 4)}")
    return out


def data_dose_lines(s: dict) -> list[str]:
    """The data-dose curves: greedy alpha against distinct training prompts and supervised
    tokens."""
    d = s.get("data_dose")
    if not d:
        return []
    tasks = list(s["config"]["tasks"])
    fr = ", ".join(f"{f:g}" for f in d["fractions"])
    out = ["", f"## Dose in data: {d['arm']} on the first {fr} of each task's distinct "
           "training prompts, at fixed epochs (the first seed; base at 0)", "",
           "| task | prompts | supervised tokens | greedy alpha |", "| --- | --- | --- | --- |"]
    for t in tasks:
        ys = [s["base"]["tasks"][t]["greedy"]] + [p["tasks"][t]["greedy"] for p in d["points"]]
        out.append(f"| {t} | {' / '.join(map(str, d['prompts'][t]))} | "
                   f"{' / '.join(map(str, d['supervised_tokens'][t]))} | "
                   f"{' / '.join(f'{y:.3f}' for y in ys)} |")
    out += ["", "![data dose](data_dose.png)", ""]
    out += curve_lines(d["vs_prompts"], "greedy alpha per 100 distinct training prompts")
    out += curve_lines(d["vs_supervised_tokens"], "greedy alpha per 10k supervised tokens")
    return out


def answer_primary(name: str, r: dict) -> list[str]:
    """The primary metrics' verdict for one arm at its largest budget: the tasks whose greedy
    alpha or predicted speed-up moved beyond its CI, and the change of the speed-up spread."""
    out = [f"- {name} at {r['tokens']} tokens, over {len(r.get('seeds', [0]))} seed(s) and the "
           "prompts (primary metrics; tasks beyond their paired 95% CI):"]
    for key, label in (("d_greedy", "greedy alpha"), ("d_speedup", "predicted speed-up")):
        moved = [f"{t} {_fmt(v[key], 3)}" for t, v in r["tasks"].items() if v[key]["claimed"]]
        out.append(f"  - {label}: " + ("; ".join(moved) if moved else
                                       "no task moved beyond its paired CI"))
    d = r["speedup_spread"]["d_max_min"]
    out.append(f"  - predicted speed-up max/min across tasks "
               f"{r['speedup_spread']['max_min']['value']:.2f} (change {_mark(d, 2)})")
    if (u := r.get("U_sandler_change")) is not None:
        out.append(f"  - U (Sandler et al., full-vocabulary CE variance; the loss lowers CE "
                   f"directly) changes by {u['value']:+.0%} [{u['lo']:+.0%}, {u['hi']:+.0%}]"
                   + "*" * u["claimed"])
    return out


def plot_data_dose(s: dict, path: Path) -> None:
    """Per task, the paired change in greedy alpha against the base drafter (95% CI bars)
    against the task's distinct training prompts and its supervised tokens."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d, tasks = s["data_dose"], list(s["config"]["tasks"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), squeeze=False)
    for ax, key, label in ((axes[0][0], "prompts", "distinct training prompts (per task)"),
                           (axes[0][1], "supervised_tokens", "supervised tokens (per task)")):
        for t in tasks:
            cis = [p["tasks"][t]["d_greedy"] for p in d["points"]]
            ys = [0.0] + [c["value"] for c in cis]
            err = [[0.0] + [c["value"] - c["lo"] for c in cis],
                   [0.0] + [c["hi"] - c["value"] for c in cis]]
            ax.errorbar(d[key][t], ys, yerr=err, marker="o", capsize=3, label=t)
        ax.axhline(0.0, color="k", lw=0.5)
        ax.set_xlabel(label)
        ax.set_ylabel("greedy alpha change vs base")
        ax.set_title(f"{d['arm']}: data dose at fixed epochs")
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def answer_dose(s: dict) -> list[str]:
    """The data dose's verdict for the base-worst task (by greedy alpha): its slope per 100
    distinct prompts and per 10k supervised tokens, claimed only where the CI excludes 0."""
    d = s.get("data_dose")
    if not d:
        return []
    w = s["base"].get("base_worst_greedy_task")
    if w is None or w not in d["vs_prompts"]["tasks"]:
        return []
    p, t = d["vs_prompts"]["tasks"][w], d["vs_supervised_tokens"]["tasks"][w]
    moves = "rises" if p["slope"]["lo"] > 0 else "falls" if p["slope"]["hi"] < 0 else \
        "does not move beyond its CI"
    return [f"- data dose ({d['arm']}, fixed epochs): the base-worst task by greedy alpha ({w}) "
            f"{moves} with more distinct prompts: {_mark(p['slope'], 4)} per 100 prompts, "
            f"{_mark(t['slope'], 4)} per 10k supervised tokens (measured up to "
            f"{p['max_dose']:.0f} prompts; nothing projected beyond "
            f"{d['vs_prompts']['limit'] * p['max_dose']:.0f})."]
