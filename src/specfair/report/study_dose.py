"""The report's sections for issue 29, from ``summary.json`` alone: the data dose in supervised
tokens (per task and point the prompts, supervised and prompt tokens achieved beside the
target; slopes per doubling and over the last segment; per dose task the first dose whose
change is beyond its CI) and the power of the test sets (the smallest detectable paired
Δ greedy alpha and Δ speed-up per task, and which spread it rests on). Nothing here computes a
statistic but the prompts a target needs (:func:`specfair.measure.power.n_needed`, from the
stored spread)."""

from __future__ import annotations

from specfair.report.doc import Block, Heading, Para, Table
from specfair.report.study_metrics import _mark, curve_table


def _n(x) -> str:
    return "–" if x is None else f"{x:,}"


def _m(x: float | None, pct: bool = False) -> str:
    if x is None:
        return "–"
    return f"{x:.1%}" if pct else f"{x:.3f}"


def token_dose_blocks(s: dict, figure: Block | None = None) -> list[Block]:
    """The data dose in supervised tokens: per task and point the distinct prompts, supervised
    and prompt tokens (one epoch; ``short``: the task's data held fewer than the target) and
    greedy alpha; the figure; slopes per doubling, over the last segment and per 10k."""
    d = s["data_dose"]
    tasks, dosed = list(s["config"]["tasks"]), set(d["dose_tasks"])
    targets = ", ".join(f"{n:,}" for n in d["dose_tokens"])
    rows = []
    for t in tasks:
        reached = d.get("reached", {}).get(t) or []
        sup = [f"{v:,}" + (" (short)" if k and reached[k - 1] is False else "")
               for k, v in enumerate(d["supervised_tokens"][t])]
        ys = [s["base"]["tasks"][t]["greedy"]] + [p["tasks"][t]["greedy"] for p in d["points"]]
        rows.append([t + ("" if t in dosed else " (collateral)"),
                     " / ".join(map(str, d["prompts"][t])), " / ".join(sup),
                     " / ".join(_n(v) for v in d["prompt_tokens"][t]),
                     " / ".join(f"{y:.3f}" for y in ys)])
    seeds = d["points"][-1].get("seeds", [0])
    out: list[Block] = [
        Heading(f"Dose in data: {d['arm']} at {targets} supervised tokens per dose task, "
                "at fixed epochs"),
        Para(f"Dose tasks: {', '.join(d['dose_tasks'])}: at each point the first training "
             "prompts (a seeded order; a smaller dose a prefix of a larger one) whose training "
             "texts reach the target in supervised (response) tokens; '(short)': the task's "
             "data hold fewer, all of them trained on, the achieved count shown. The other "
             "tasks train on all their prompts at every point (collateral). Supervised and "
             "prompt tokens are one epoch's; the arms trained on the largest dose, so its "
             f"point is over {len(seeds)} seed(s) ({', '.join(map(str, seeds))}).",
             kind="note"),
        Table(["task", "prompts", "supervised tokens", "prompt tokens", "greedy alpha"], rows,
              "Per task, from the base drafter (0) to each dose (greedy alpha: the first seed; "
              "the largest dose: the mean over its seeds)",
              ["l", "r", "r", "r", "r"])]
    if figure is not None:
        out.append(figure)
    last = [d["points"][-1]["tasks"][t]["d_greedy"] for t in tasks]
    out.append(Table(["task", f"Δ greedy alpha at {d['dose_tokens'][-1]:,} (seeds, prompts)"],
                     [[t, _mark(c)] for t, c in zip(tasks, last, strict=True)],
                     "At the largest dose, against the base drafter (paired 95% CI; * claimed)",
                     ["l", "r"]))
    log2, seg = d.get("vs_log2_supervised_tokens"), d.get("last_segment")
    if log2:
        rows = [[t, _mark(v["slope"], 4),
                 _mark(seg["tasks"][t]["slope"], 4) if seg and t in seg["tasks"] else "–"]
                for t, v in log2["tasks"].items()]
        out.append(Table(["task", "per doubling of the supervised tokens",
                          f"last segment ({d['dose_tokens'][-2]:,} → {d['dose_tokens'][-1]:,}), "
                          "per 10k"], rows,
                         "Greedy alpha against the dose, least-squares slopes over the dose "
                         "points (first seed; 95% CI, * claimed): a last segment whose CI "
                         "includes 0 is a measured plateau, given the power below",
                         ["l", "r", "r"]))
    if t := curve_table(d["vs_supervised_tokens"], "greedy alpha per 10k supervised tokens "
                        "(base at 0 included)"):
        out.append(t)
    return out


def answer_token_dose(s: dict) -> list[str]:
    """Per dose task: the first dose whose paired change in greedy alpha is beyond its CI (or
    none up to the largest), the slope per doubling and over the last segment."""
    d = s.get("data_dose")
    if not d or d.get("unit") != "supervised_tokens":
        return []
    out = []
    for t in d["dose_tasks"]:
        first = next(((k, p["tasks"][t]["d_greedy"]) for k, p in enumerate(d["points"])
                      if p["tasks"][t]["d_greedy"]["claimed"]), None)
        sup = d["supervised_tokens"][t]
        when = (f"first beyond its paired CI at {sup[first[0] + 1]:,} supervised tokens "
                f"({_mark(first[1])})" if first else
                f"no dose up to {sup[-1]:,} supervised tokens moves it beyond its paired CI")
        slope = (d.get("vs_log2_supervised_tokens") or {}).get("tasks", {}).get(t)
        seg = (d.get("last_segment") or {}).get("tasks", {}).get(t)
        out.append(f"data dose ({d['arm']}, fixed epochs), {t}: greedy alpha {when}"
                   + (f"; {_mark(slope['slope'], 4)} per doubling" if slope else "")
                   + (f"; last segment {_mark(seg['slope'], 4)} per 10k" if seg else "") + ".")
    return out


def power_blocks(s: dict) -> list[Block]:
    """The smallest detectable paired effect per task (two-sided 95 %, 80 % power) of the
    test set (Δ greedy alpha) and of the timed prompts (Δ speed-up), and what it rests on."""
    p = s.get("power")
    if not p:
        return []
    tasks = list(s["config"]["tasks"])
    dosed = set((s.get("data_dose") or {}).get("dose_tasks") or [])
    a, sp = p["alpha"], p.get("speedup")
    arms = [n for n in a["arms"] if n in s["config"]["arms"]]
    dose_pts = [n for n in a["arms"] if n not in arms]
    shown = arms + dose_pts[-1:]  # the arms at their largest budget, the largest dose
    rows = []
    for t in tasks:
        pl = a["planning"][t]
        rows.append([t + (" (dose task)" if t in dosed else ""), _n(pl["n"]), _m(pl["sd"]),
                     _m(pl["mde"]), _n(pl["n_for_target"]),
                     *[_m(a["arms"][n][t]["mde"]) + f" (sd {_m(a['arms'][n][t]['sd'])})"
                       for n in shown]])
    z = p["z"]
    out: list[Block] = [
        Heading("Power: the smallest detectable paired effect"),
        Para(f"MDE = (z_0.975 + z_0.8) × sd(d) / √n = {z:.3f} × sd(d) / √n: the smallest mean "
             f"paired difference d a two-sided test at {p['level']:.0%} detects with "
             f"{p['power']:.0%} power on the task's n prompts. Δ greedy alpha (teacher-forced, "
             "the same test prompts): 'planning' uses the sd of the base drafter's own "
             "per-prompt greedy alpha (before any arm exists; an upper bound on a paired "
             "difference's sd where the drafters' alphas correlate across prompts); an arm's "
             "column uses the sd of its per-prompt paired differences against the base "
             f"(first seed). Target: ≤ {p['targets']['alpha']} (prompts needed at the planning "
             "sd shown).", kind="note"),
        Table(["task", "test prompts", "base sd", "MDE Δ greedy (planning)",
               f"prompts for ≤ {p['targets']['alpha']}", *[f"MDE {n} (paired)" for n in shown]],
              rows, "Smallest detectable Δ greedy alpha per task",
              ["l"] + ["r"] * (4 + len(shown)))]
    if not sp:
        out.append(Para("Δ speed-up: nothing timed yet (its MDE comes from the timed stage's "
                        "per-prompt paired ratios).", kind="note"))
        return out
    timed = list(sp["arms"])
    rows = []
    for t, pl in sp["planning"].items():
        rows.append([t + (" (dose task)" if t in dosed else ""), _n(pl["n"]), _m(pl["sd"]),
                     _m(pl["mde"], True), _n(pl["n_for_target"]),
                     *[_m(sp["arms"][n].get(t, {}).get("mde"), True) for n in timed]])
    out += [Para("Δ speed-up (timed, relative): d = a prompt's SD tokens/s with the arm's "
                 "drafter ÷ with the base drafter − 1 (the same AR runs: the ratio of the two "
                 "speed-ups); 'planning' uses the sd of the base drafter's per-prompt speed-up "
                 "relative to its mean (the prompts' own spread, which pairing removes, is in "
                 f"it: an upper bound). Target: ≤ {p['targets']['speedup']:.0%} on the two "
                 "worst tasks.", kind="note"),
            Table(["task", "timed prompts", "base sd (relative)", "MDE Δ speed-up (planning)",
                   f"prompts for ≤ {p['targets']['speedup']:.0%}",
                   *[f"MDE {n} (paired)" for n in timed]], rows,
                  "Smallest detectable Δ speed-up per task (relative)",
                  ["l"] + ["r"] * (4 + len(timed)))]
    return out


def power_check_blocks(s: dict) -> list[Block]:
    """Issue 29's power targets per lagging task, met or not, with n (``power.checks``)."""
    c = (s.get("power") or {}).get("checks")
    if not c:
        return []
    rows = []
    for t in c["tasks"]:
        a, sp = c["per_task"][t]["alpha"], c["per_task"][t]["speedup"]
        yes = lambda x: "met" if x["met"] else "not met"  # noqa: E731
        rows.append([t, _n(a["n"]), _m(a["mde"]), yes(a), _n(sp["n"]) if sp["n"] else "–",
                     _n(sp["new_tokens"]), _m(sp["mde"], True),
                     (yes(sp) if sp["source"] else "not timed")
                     + ("" if sp["applies"] else " (target not set)")])
    tg = s["power"]["targets"]
    return [Table(["task", "test prompts", f"MDE Δ greedy alpha ({c['alpha_source']})",
                   f"≤ {tg['alpha']} on ≥ {tg.get('min_test', 100)} prompts", "timed prompts",
                   "new tokens", f"MDE Δ speed-up ({c['speedup_source'] or 'not timed'})",
                   f"≤ {tg['speedup']:.0%} on ≥ {tg.get('min_timed', 30)} prompts of ≥ "
                   f"{tg.get('min_new_tokens', 128)} tokens"], rows,
                  "The power targets per lagging task (two-sided 95%, 80% power; the "
                  "Δ speed-up target is set for the two worst tasks by the base drafter's "
                  f"predicted speed-up: {', '.join(c['two_worst'])}); 'planning' is the base "
                  "drafter's own spread, an upper bound, where nothing paired is there yet",
                  ["l"] + ["r"] * 7)]


def training_blocks(s: dict) -> list[Block]:
    """What each trained drafter trained on, per task (``summary.json``'s ``training``)."""
    runs = s.get("training")
    if not runs:
        return []
    rows = []
    for r in runs:
        name = r["arm"] + ("" if "dose_point" in r else f" {r['budget']:.2f}")
        seen = (f"{r['tokens']:,}" if r.get("supervised_tokens") is None else
                f"{r['tokens']:,} = {r['supervised_tokens']:,} + {r['prompt_tokens']:,}")
        ep = "" if r["epochs"] is None else f", {r['epochs']:.2f} epochs"
        head = f"{name} (seed {r['seed']}; seen {seen} tokens{ep})"
        if not r["tasks"]:
            rows.append([head, "–", "–", "–", "–", "–", "–"])
        for k, (t, v) in enumerate(r["tasks"].items()):
            rows.append([head if k == 0 else "", t, _n(v["prompts"]),
                         _n(v["supervised_tokens"]), _n(v["prompt_tokens"]), _n(v["draws"]),
                         "–" if v["epochs"] is None else f"{v['epochs']:.2f}"])
    why = sorted({r["draws_from"] for r in runs if r.get("draws_from")})
    return [Heading("What each drafter trained on"),
            Table(["drafter", "task", "distinct prompts", "supervised tokens (one epoch)",
                   "prompt tokens (one epoch)", "sequences drawn", "epochs run"], rows,
                  "Per arm at its largest budget and per data-dose point (first seed): one "
                  "epoch's distinct prompts and tokens per task, the sequences drawn of each "
                  "(the sampler replayed, kept only where every step's tasks equal the train "
                  "log's) and the epochs run on each (drawn ÷ prompts); beside the drafter, the "
                  "training tokens it saw (supervised + prompt positions) and the epochs they "
                  "make (÷ one epoch's tokens). Draws: " + "; ".join(why) + ".",
                  ["l", "l"] + ["r"] * 5)]


def matched_arms_blocks(s: dict) -> list[Block]:
    """Issue 29 item 4: the arms side by side at their largest budget (with ``dose_tokens``:
    the largest dose) on each dose task -- the paired change in greedy alpha and in predicted
    speed-up against the base drafter, the seeds they rest on, and what the task gave each arm
    (one epoch's supervised tokens, the epochs run: ``summary.json``'s ``training``). Only
    with two arms or more."""
    arms = {n: a["budgets"][-1] for n, a in s["arms"].items() if a.get("budgets")}
    if len(arms) < 2:
        return []
    cfg = s["config"]
    tasks = [t for t in cfg["tasks"] if not cfg.get("dose_tasks") or t in cfg["dose_tasks"]]
    trained = {r["arm"]: r for r in s.get("training") or [] if "dose_point" not in r}
    rows = []
    for t in tasks:
        for k, (name, r) in enumerate(arms.items()):
            v = (trained.get(name) or {}).get("tasks", {}).get(t) or {}
            ep = v.get("epochs")
            vu = (s["arms"][name].get("vs_uniform") or {})
            rows.append([t if k == 0 else "", name, str(len(r.get("seeds", [0]))),
                         _n(v.get("supervised_tokens")), "–" if ep is None else f"{ep:.2f}",
                         _mark(r["tasks"][t]["d_greedy"]),
                         _mark(r["tasks"][t]["d_speedup"], 2),
                         _mark(vu["d_greedy"][t]) if vu else "–",
                         _mark(vu["d_speedup"][t], 2) if vu else "–"])
    return [Heading("The arms matched per task"),
            Table(["task", "arm", "seeds", "supervised tokens (one epoch)", "epochs run",
                   "Δ greedy alpha", "Δ predicted speed-up", "Δ greedy alpha vs uniform",
                   "Δ predicted speed-up vs uniform"], rows,
                  "Each arm at its largest budget" + (" (the largest dose)" if
                                                      cfg.get("dose_tokens") else "")
                  + " on each dose task: the paired change against the base drafter (95% CI "
                  "over seeds and prompts; * claimed), the seeds it rests on, and the task's "
                  "supervised tokens and epochs in that arm (monolingual: the text in the "
                  "task's output language it trained on instead); then each arm against "
                  "uniform directly (paired on the same prompts, the first seed of each). "
                  "The predicted speed-ups replay the teacher-forced passes with the "
                  "measured costs (the timed arms: measured beside them).",
                  ["l", "l"] + ["r"] * 7)]


def answer_power(s: dict) -> list[str]:
    """One line: the smallest detectable Δ greedy alpha of the dose tasks (or every task)."""
    p = s.get("power")
    if not p:
        return []
    dosed = (s.get("data_dose") or {}).get("dose_tasks") or list(s["config"]["tasks"])
    a = p["alpha"]
    best = next((n for n in a["arms"] if n in s["config"]["arms"]), None)
    cells = []
    for t in dosed:
        m = (a["arms"][best][t] if best else a["planning"][t])["mde"]
        cells.append(f"{t} {_m(m)}")
    src = f"{best}'s paired sd" if best else "the base drafter's sd (planning)"
    return [f"Power (95%, 80%): the smallest detectable Δ greedy alpha ({src}): "
            + ", ".join(cells) + f" (target ≤ {p['targets']['alpha']}; see Power)."]
