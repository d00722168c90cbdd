"""The report's sections for the metrics of issue 18, as blocks (:mod:`.doc`) and answer lines
from ``summary.json`` (:mod:`specfair.study.summary` computes every number): the primary metrics
(greedy alpha, predicted speed-up) named and tabled with paired CIs, sampled-alpha bounds,
exact alpha and Sandler et al.'s U, spreads across tasks, dose-response curves with slope CIs
and the data dose (table, verdict; its figure is drawn with the others in :mod:`.study`).
Nothing here computes a statistic."""

from __future__ import annotations

import math

from specfair.measure.replay import POLICIES
from specfair.report.doc import Block, Bullets, Heading, Para, Table


def _fmt(ci: dict, nd: int = 3) -> str:
    return f"{ci['value']:+.{nd}f} [{ci['lo']:+.{nd}f}, {ci['hi']:+.{nd}f}]"


def num(x: float | None, nd: int = 2) -> str:
    """A number, or "–" where there is none (None or not finite)."""
    return "–" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def mean_ci(ci: dict | None, nd: int = 2) -> str:
    """A ``{"mean", "lo", "hi"}`` bootstrap block (timed.json's) as ``m [lo, hi]``."""
    if not ci or ci.get("mean") is None or not math.isfinite(ci["mean"]):
        return "–"
    lo, hi = ci.get("lo"), ci.get("hi")
    band = f" [{lo:.{nd}f}, {hi:.{nd}f}]" if lo is not None and hi is not None else ""
    return f"{ci['mean']:.{nd}f}{band}"


def _mark(ci: dict, nd: int = 3) -> str:
    """A paired change with its CI, ``*`` where it is claimed (the CI excludes 0)."""
    return _fmt(ci, nd) + ("*" if ci.get("claimed") else "")


def _pct(ci: dict) -> str:
    return (f"{ci['value']:+.0%} [{ci['lo']:+.0%}, {ci['hi']:+.0%}]"
            + ("*" if ci.get("claimed") else ""))


def metric_notes() -> list[Block]:
    """What each metric is, by the name the report gives it."""
    return [Para("Metrics, by name:"), Bullets([
        "**greedy alpha** (primary): the share of response positions where the drafter's "
        "argmax is the target's (exact: the target's argmax is its stored top-1); what greedy "
        "decoding accepts, and what no top-k bucket can inflate;",
        f"**predicted speed-up** (primary): the headline policy ({POLICIES[0].label}) replayed "
        "with greedy acceptance on the teacher-forced passes, priced with the measured c and "
        "v(k);",
        "**sampled alpha [lower, upper]**: sum of min(p, q) over the target's top-k tokens only "
        "(lower bound) and with the residual bucket min(p_rest, q_rest) added (upper bound, what "
        "the loss's buckets see); the truth lies between, and the gap is at most the task's "
        "**residual mass** (1 - the target's top-k probability);",
        "**spread across tasks**: max/min ratio and max - min of greedy alpha and of the "
        "predicted speed-up;",
        "**U (Sandler et al.)**: the population variance across tasks of the drafter's mean "
        "cross-entropy to the target over the full vocabulary (Sandler et al. 2025, "
        "arXiv:2510.02128, as its reviews describe the metric: the variance of the per-task "
        "drafter-verifier cross-entropy), from the target's stored final hidden states and "
        "output head; the fkl loss lowers each task's CE directly, so U is an "
        "objective-adjacent quantity, not an outcome;",
        "**exact sampled alpha**: sum of min(p, q) over the full vocabulary, from the same "
        "states; it lies within the bounds above;",
        "**CE spread (top-k)**: the same variance on the top-k + 1 buckets: a lower bound of "
        "each task's CE and the quantity the fkl loss minimizes, so it falls by construction; "
        "shown beside U, never as U."]),
        Para("CIs: 95% percentile bootstrap, paired against the base drafter; where an arm was "
             "trained with several seeds (the largest budget), each replicate draws seeds with "
             "replacement, then prompt groups (hierarchical). A change is claimed only where its "
             "CI excludes 0 (marked *).", kind="note")]


def _rows(s: dict) -> list[dict]:
    return [r for a in s["arms"].values() for r in a["budgets"]]


def primary_blocks(s: dict) -> list[Block]:
    """Greedy alpha and predicted speed-up per task, paired changes with CIs; sampled-alpha
    bounds and residual mass; U (Sandler et al.); spreads across tasks."""
    tasks = list(s["config"]["tasks"])
    base, rows = s["base"], _rows(s)
    out: list[Block] = [Heading("Primary: greedy alpha and predicted speed-up per task"),
                        *metric_notes()]
    cells = []
    for t in tasks:
        r = base["tasks"][t]
        b = r.get("alpha_bounds")
        cells.append([t, f"{r['greedy']:.3f}", f"{r['speedup']['value']:.2f}x",
                      f"[{b[0]:.3f}, {b[1]:.3f}]" if b else f"upper only: {r['alpha']:.3f}",
                      f"{r['alpha_exact']:.3f}" if "alpha_exact" in r else "–",
                      f"{r['resid']:.4f}"])
    out.append(Table(["task", "base greedy alpha", "base predicted speed-up",
                      "sampled alpha [lower, upper]", "exact sampled alpha", "residual mass"],
                     cells, "The base drafter per task (test split, teacher-forced on the "
                     "target's greedy answers)", ["l"] + ["r"] * 5))
    for key, label, nd in (("d_greedy", "greedy alpha", 3),
                           ("d_speedup", "predicted speed-up", 2)):
        out.append(Table(
            ["arm", "budget", TOKENS_HEAD, "seeds", *tasks],
            [[r["arm"], f"{r['budget']:.2f}", tokens_cell(r), str(len(r.get("seeds", [0]))),
              *(_mark(r["tasks"][t][key], nd) for t in tasks)] for r in rows],
            f"Paired change in {label} against the base drafter (95% CI; * claimed)",
            ["l"] + ["r"] * (len(tasks) + 3)))
    short = lambda d: f"{d['value']:+.3f}" + "*" * d["claimed"]  # noqa: E731
    bounds = [[r["arm"], f"{r['budget']:.2f}",
               *(f"{short(r['tasks'][t]['d_alpha_lo'])} / {short(r['tasks'][t]['d_alpha'])}"
                 for t in tasks)]
              for r in rows if all("d_alpha_lo" in r["tasks"][t] for t in tasks)]
    if bounds:
        out.append(Table(["arm", "budget", *tasks], bounds,
                         "Paired change in sampled alpha, lower / upper bound (the loss's "
                         "residual bucket can move only the upper one)",
                         ["l"] + ["r"] * (len(tasks) + 1)))

    def cell(d: dict, k: str, paired: bool) -> str:
        return f"{d[k]['value']:.3f}" + (f" ({_mark(d['d_' + k])})" if paired else "")

    spread = []
    for r in [base] + rows:
        g, sp, p = r["greedy_spread"], r["speedup_spread"], r is not base
        spread.append([f"{r['arm']} {r['budget']:.2f}", cell(g, "max_min", p),
                       cell(g, "range", p), cell(sp, "max_min", p), cell(sp, "range", p)])
    out.append(Table(["drafter", "greedy max/min", "greedy max-min", "speed-up max/min",
                      "speed-up max-min"], spread,
                     "Spread across tasks (value, and paired change against the base)",
                     ["l"] + ["r"] * 4))
    caption = "U (Sandler et al., full-vocabulary CE variance across tasks)"
    if "U_sandler" in base:
        out.append(Table(
            ["drafter", "U (Sandler et al.)", "change against the base (95% CI)"],
            [["base 0.00", f"{base['U_sandler']['value']:.4g}", "–"]]
            + [[f"{r['arm']} {r['budget']:.2f}", f"{r['U_sandler']['value']:.4g}",
                _pct(r["U_sandler_change"])] for r in rows if "U_sandler" in r],
            caption, ["l", "r", "r"]))
    else:
        out.append(Para(f"{caption}: not computed in this run (no stored target final hidden "
                        "states: a run made before they were recorded); the CE spread on the "
                        "top-k buckets is no substitute.", kind="note"))
    return out


def curve_table(c: dict | None, what: str) -> Table | None:
    """A curve's slope per task with its CI and the value fitted at the projection limit."""
    if not c:
        return None
    limit, rows = c["limit"], []
    for t, v in c["tasks"].items():
        f = v["fitted_at_limit"]
        rows.append([t, _mark(v["slope"], 4), f"{limit * v['max_dose']:,.0f}",
                     f"{f['value']:.3f} [{f['lo']:.3f}, {f['hi']:.3f}]"])
    if "mean" in c:
        rows.append(["mean over tasks", _mark(c["mean"]["slope"], 4), "–", "–"])
    return Table(["task", "slope [95% CI]", f"{limit:g}x the largest dose", "fitted there"],
                 rows, f"{what}: least-squares slope (* claimed) and the value fitted at "
                 f"{limit:g}x the largest measured dose (nothing projected further)",
                 ["l", "r", "r", "r"])


def data_dose_blocks(s: dict, figure: Block | None = None) -> list[Block]:
    """The data-dose section: greedy alpha against distinct training prompts and supervised
    tokens (``figure``, when given, follows the table)."""
    d = s.get("data_dose")
    if not d:
        return []
    tasks = list(s["config"]["tasks"])
    fr = ", ".join(f"{f:g}" for f in d["fractions"])
    rows = []
    for t in tasks:
        ys = [s["base"]["tasks"][t]["greedy"]] + [p["tasks"][t]["greedy"] for p in d["points"]]
        pro = (d.get("prompt_tokens") or {}).get(t) or []  # summaries before they were counted
        rows.append([t, " / ".join(map(str, d["prompts"][t])),
                     " / ".join(map(str, d["supervised_tokens"][t])),
                     " / ".join("–" if v is None else str(v) for v in pro) or "–",
                     " / ".join(f"{y:.3f}" for y in ys)])
    out: list[Block] = [
        Heading(f"Dose in data: {d['arm']} on the first {fr} of each task's distinct training "
                "prompts, at fixed epochs"),
        Table(["task", "prompts", "supervised tokens", "prompt tokens", "greedy alpha"], rows,
              "Per task, from the base drafter (0) to each fraction (the first seed; tokens: "
              "one epoch of the task's training sequences)", ["l", "r", "r", "r", "r"])]
    if figure is not None:
        out.append(figure)
    out += [t for t in (curve_table(d["vs_prompts"], "greedy alpha per 100 distinct training "
                                                     "prompts"),
                        curve_table(d["vs_supervised_tokens"], "greedy alpha per 10k "
                                                               "supervised tokens")) if t]
    return out


TOKENS_HEAD = "training tokens (supervised + prompt)"


def tokens_cell(r: dict) -> str:
    """A budget row's training tokens for a table: ``1,080 (216 + 864)`` (supervised +
    prompt positions), or the total alone where the run did not count them apart."""
    if r.get("supervised_tokens") is None:
        return f"{r['tokens']:,}"
    return f"{r['tokens']:,} ({r['supervised_tokens']:,} + {r['prompt_tokens']:,})"


def tokens_seen(r: dict) -> str:
    """A budget row's training tokens, the supervised (response) and prompt positions apart
    where the run counted them."""
    if r.get("supervised_tokens") is None:
        return f"{r['tokens']:,} training tokens"
    return (f"{r['tokens']:,} training tokens ({r['supervised_tokens']:,} supervised + "
            f"{r['prompt_tokens']:,} prompt positions)")


def answer_primary(name: str, r: dict) -> list[str]:
    """The primary metrics' verdict for one arm at its largest budget: the tasks whose greedy
    alpha or predicted speed-up moved beyond its CI, and the change of the speed-up spread."""
    out = []
    for key, label in (("d_greedy", "greedy alpha"), ("d_speedup", "predicted speed-up")):
        moved = [f"{t} {_fmt(v[key], 3)}" for t, v in r["tasks"].items() if v[key]["claimed"]]
        who = (f"**{name}** at {tokens_seen(r)}, over {len(r.get('seeds', [0]))} seed(s) "
               "and the prompts" if not out else f"**{name}**")
        out.append(f"{who}, {label} (primary; tasks beyond their paired 95% CI): "
                   + ("; ".join(moved) if moved else "no task moved beyond its paired CI"))
    d = r["speedup_spread"]["d_max_min"]
    out.append(f"**{name}**, predicted speed-up max/min across tasks (primary) "
               f"{r['speedup_spread']['max_min']['value']:.2f} (change {_mark(d, 2)})")
    return out


def answer_u(r: dict) -> str:
    """U (Sandler et al.)'s change, or why the run has none."""
    if (u := r.get("U_sandler_change")) is None:
        return ("U (Sandler et al.) not computed (no stored target final hidden states in this "
                "run)")
    return (f"U (Sandler et al., full-vocabulary CE variance; the loss lowers CE directly) "
            f"changes by {_pct(u)}")


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
    return [f"data dose ({d['arm']}, fixed epochs): the base-worst task by greedy alpha ({w}) "
            f"{moves} with more distinct prompts: {_mark(p['slope'], 4)} per 100 prompts, "
            f"{_mark(t['slope'], 4)} per 10k supervised tokens (measured up to "
            f"{p['max_dose']:.0f} prompts; nothing projected beyond "
            f"{d['vs_prompts']['limit'] * p['max_dose']:.0f})."]
