"""The first paragraph of a data-dose run's report (issue 29 item 7), from ``summary.json``'s
``data_dose.verdicts``, ``power.checks`` and the drafting policies, with ``timed.json`` where
the largest dose was timed (read defensively: any field may be absent): per dose task whether
its predicted speed-up rises beyond its paired CI (and at which dose), saturates (and from
which supervised-token count) or is undecided (and why); the gap with the best policy alone,
fine-tuning alone and both; what would overturn the answer; what a user should do; the
'lossless' caveat of the dtype the timed runs computed in; and one figure: the dose tasks'
predicted speed-up against their supervised tokens (log x, CIs), the other tasks' collateral
dashed, the timed speed-up at the largest dose beside it. Nothing here computes a statistic.
"""

from __future__ import annotations

import io

from specfair.report.doc import Block, Figure, Para, Table

ANSWER_FIGURE = "dose_answer.png"


def _ci(c: dict, nd: int = 2, sign: bool = True) -> str:
    f = f"{{:{'+' if sign else ''}.{nd}f}}"
    return f"{f.format(c['value'])} [{f.format(c['lo'])}, {f.format(c['hi'])}]"


def _timed(timed: dict | None, arm: str, t: str, key: str) -> dict | None:
    """A timed drafter's per-task CI (``{"mean", "lo", "hi"}``), None where absent."""
    v = (((timed or {}).get("drafters") or {}).get(arm) or {}).get("tasks", {}).get(t) or {}
    c = v.get(key)
    return c if isinstance(c, dict) and c.get("mean") is not None else None


def _band(c: dict | None, unit: str = "x") -> str:
    if not c:
        return "–"
    band = f" [{c['lo']:.2f}, {c['hi']:.2f}]" if c.get("lo") is not None else ""
    return f"{c['mean']:.2f}{band}{unit}"


def _mde(s: dict, t: str) -> str:
    """The task's power against the 0.02 target, from ``power.checks``."""
    c = ((s.get("power") or {}).get("checks") or {}).get("per_task", {}).get(t)
    if not c:
        return ""
    a = c["alpha"]
    if a["mde"] is None:
        return "; power: no MDE (fewer than 2 test prompts)"
    return (f"; its {a['n']} test prompts detect Δ greedy alpha ≥ {a['mde']:.3f} (target "
            f"≤ {a['target']} on ≥ {a['min_n']} prompts: {'met' if a['met'] else 'not met'})")


def _sentence(s: dict, t: str, v: dict, timed: dict | None) -> str:
    d, arm = s["data_dose"], s["data_dose"]["arm"]
    big = v["largest"]
    at_big = (f"at the largest dose ({big['supervised_tokens']:,} supervised tokens, "
              f"{len(big['seeds'])} seed(s)) Δ predicted speed-up {_ci(big['d_speedup'])}x")
    meas = _timed(timed, arm, t, "vs_base")
    measured = (f"; measured (timed) {_band(meas, '')} times the base drafter's speed-up"
                if meas else "")
    if v["verdict"] == "rises":
        r = v["rises_at"]
        head = (f"**{t}: rises** from {r['supervised_tokens']:,} supervised tokens (the "
                f"{r['dose_tokens']:,}-token dose): Δ predicted speed-up {_ci(r['change'])}x "
                f"against the base drafter, beyond its paired 95% CI; {at_big}{measured}")
    elif v["verdict"] == "saturates":
        seg = d["segments"][t]["segment"]
        head = (f"**{t}: saturates at {v['saturates_at']:,} supervised tokens**: no dose "
                f"rises beyond its paired CI, and from {seg['supervised_tokens'][0]:,} to "
                f"{seg['supervised_tokens'][1]:,} the slopes per 10k supervised tokens, greedy "
                f"alpha {_ci(seg['greedy_per_10k'], 4)} and predicted speed-up "
                f"{_ci(seg['speedup_per_10k'], 3)}x, both include 0; {at_big}{measured}")
    else:
        head = f"**{t}: undecided**: {v['why']}; {at_big}{measured}"
    ran = d["segments"][t].get("ran_out")
    if ran:
        head += (f" (its data ran out at {ran['supervised_tokens']:,} supervised tokens, "
                 f"from the {ran['dose_tokens']:,}-token dose on: beyond it, its curve is the "
                 "other tasks' collateral)")
    return head + _mde(s, t) + "."


def _overturn_and_do(s: dict, t: str, v: dict) -> tuple[str, str]:
    """What would overturn the task's answer, and what a user should do, from its verdict."""
    d = s["data_dose"]
    if v["verdict"] == "rises":
        r = v["rises_at"]
        return (f"{t}: a rerun (more test prompts or seeds) whose CI at "
                f"{r['supervised_tokens']:,} tokens reaches 0 (its lower end is now "
                f"{r['change']['lo']:+.2f}x), or the timed speed-up at the largest dose below the "
                "base drafter's beyond its CI",
                f"{t}: fine-tune on at least {r['supervised_tokens']:,} supervised tokens of it")
    if v["verdict"] == "saturates":
        seg = d["segments"][t]["segment"]
        return (f"{t}: a larger dose whose gain over {seg['supervised_tokens'][1]:,} tokens is "
                f"beyond its CI (the last segment allows up to "
                f"{seg['greedy_per_10k']['hi']:+.4f} greedy alpha per 10k), or a test set "
                "whose smaller MDE finds a change this one cannot",
                f"{t}: more of its data buys no speed past {v['saturates_at']:,} supervised "
                "tokens; use the drafting policy (below) instead")
    return (f"{t}: nothing yet to overturn ({v['why']})",
            f"{t}: settle it first (a larger dose, or the check its reason names)")


def _speedups(r: dict, t: str) -> list[tuple[float, str]]:
    """A comparison's predicted speed-up of ``t`` with the headline policy and with the policy
    best on the held-out passes (the in-sample oracle where the run has none), each with the
    text of its cell."""
    pol = r["policies"]
    fixed = next(iter(pol))
    held = r.get("policies_heldout")
    best = (max(held, key=lambda x: held[x][t]) if held else
            max(pol, key=lambda x: pol[x][t]["speedup"]))
    a, b = pol[fixed][t]["speedup"], pol[best][t]["speedup"]
    return [(a, f"{a:.2f}"), (b, f"{b:.2f} ({best})")]


def gap_table(s: dict, timed: dict | None) -> Table:
    """Per dose task the predicted speed-up of the base drafter with the headline policy,
    with the best policy alone, fine-tuned at the largest dose, both (and their max/min over
    these tasks); the measured ones of the base drafter and at the largest dose."""
    d = s["data_dose"]
    big, base = d["points"][-1], s["base"]
    fixed = next(iter(base["policies"]))
    rows, cols = [], []
    for t in d["dose_tasks"]:
        cells = _speedups(base, t) + _speedups(big, t)
        cols.append([v for v, _ in cells])
        rows.append([t, *(c for _, c in cells), _band(_timed(timed, "base", t, "speedup"), ""),
                     _band(_timed(timed, d["arm"], t, "speedup"), "")])
    if len(cols) > 1:  # the spread of each column over these tasks
        rows.append(["max/min", *(f"{max(c) / min(c):.2f}" if min(c) > 0 else "–"
                                  for c in zip(*cols, strict=True)), "", ""])
    return Table(["task", f"base drafter, {fixed}", "best policy alone",
                  f"fine-tuned (largest dose), {fixed}", "both (fine-tuned, best policy)",
                  "measured, base drafter", "measured, largest dose"], rows,
                 "The gap: predicted speed-ups (replayed on the test passes; the best policy "
                 "chosen on the held-out passes, scored on test) and the measured ones (timed, "
                 "95% CI over prompts)", ["l"] + ["r"] * 6)


def _lossless(timed: dict | None, s: dict) -> str:
    """The share of timed SD answers equal to plain decoding's, in the dtype they ran in."""
    dts = s.get("timed_dtype")
    rows = [(n, v.get("sd_matches_ar"), sum((x or {}).get("n") or 0
                                            for x in (v.get("tasks") or {}).values()))
            for n, v in ((timed or {}).get("drafters") or {}).items()
            if isinstance(v, dict) and v.get("sd_matches_ar") is not None]
    if not rows:
        return ("'Lossless' (greedy SD gives plain decoding's answer): not measured in this run "
                "(nothing timed).")
    where = f"in {dts}" if dts else "in the dtype of the timed runs (not recorded)"
    shares = ", ".join(f"{n} {m:.0%} of {k}" for n, m, k in rows)
    f32 = ("the same runs" if dts == "float32" else
           "not timed in this run (`specfair experiment --dtype float32` times it)")
    return (f"'Lossless' carries its dtype's caveat: {where}, the share of timed SD answers "
            f"equal to plain decoding's is {shares}; float32's: {f32}.")


def dose_answer_blocks(s: dict, timed: dict | None) -> list[Block]:
    """The first paragraph of a run with a data dose in supervised tokens (its verdicts, the
    gap, what would overturn them, what to do, 'lossless'), its figure; [] for other runs."""
    d = s.get("data_dose") or {}
    ver = (d.get("verdicts") or {}).get("tasks")
    if d.get("unit") != "supervised_tokens" or not ver:
        return []
    check = d["verdicts"].get("overfit_check")
    fit = ("no overfit check recorded" if not check else
           f"overfit check on {check['task']}: greedy alpha on its training sequences "
           f"{check['gain']:+.3f} ({'passed' if check['passed'] else 'not passed'}, "
           f"≥ +{check['threshold']} to pass)")
    head = (f"In short: {d['arm']} fine-tuned at fixed epochs on "
            f"{', '.join(f'{n:,}' for n in d['dose_tokens'])} supervised tokens per dose task; "
            "the dose curve's speed-ups are the replay's predictions (the headline policy on the "
            "teacher-forced test passes), paired against the base drafter; only the largest dose "
            f"is timed; {fit}. ")
    parts = [_overturn_and_do(s, t, v) for t, v in ver.items()]
    out: list[Block] = [
        Para(head + " ".join(_sentence(s, t, v, timed) for t, v in ver.items()), kind="answer"),
        gap_table(s, timed),
        Para("What would overturn it: " + "; ".join(o for o, _ in parts) + ". What to do: "
             + "; ".join(w for _, w in parts) + ". " + _lossless(timed, s)),
        Figure(ANSWER_FIGURE, answer_figure(s, timed),
               "Predicted speed-up per task against its supervised tokens (log scale; bars: "
               "95% CI over seeds and prompts; the base drafter at the left, 'base'); the dose "
               "tasks solid, the other tasks (collateral) dashed at the dose tasks' mean dose; "
               "open squares: the measured (timed) speed-up at the largest dose, with its CI.")]
    return out


def answer_figure(s: dict, timed: dict | None) -> bytes:
    """The dose tasks' predicted speed-up against their supervised tokens (log x, CIs), the
    other tasks dashed (collateral), the base drafter at the left, the timed speed-up at the
    largest dose beside the predicted one."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    d, tasks = s["data_dose"], list(s["config"]["tasks"])
    dosed = set(d["dose_tasks"])
    fig = MplFigure(figsize=(8.5, 4.2), dpi=90, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    mean_x = np.mean([d["supervised_tokens"][u][1:] for u in dosed], axis=0)
    x0 = min(min(d["supervised_tokens"][u][1:]) for u in dosed) / 3  # where 'base' sits
    for t in tasks:
        cis = [s["base"]["tasks"][t]["speedup"]] + [p["tasks"][t]["speedup"] for p in d["points"]]
        xs = np.array([x0] + list(d["supervised_tokens"][t][1:] if t in dosed else mean_x),
                      float)
        ys = np.array([c["value"] for c in cis])
        err = [np.maximum(ys - [c["lo"] for c in cis], 0), np.maximum([c["hi"] for c in cis]
                                                                      - ys, 0)]
        line = ax.errorbar(xs, ys, yerr=err, marker="o", ms=4, capsize=3,
                           ls="-" if t in dosed else "--",
                           label=t + ("" if t in dosed else " (collateral)"))
        m = _timed(timed, d["arm"], t, "speedup")
        if m is not None:
            lo, hi = (m["mean"] if m.get(k) is None else m[k] for k in ("lo", "hi"))
            ax.errorbar([xs[-1] * 1.12], [m["mean"]],
                        yerr=[[max(m["mean"] - lo, 0)], [max(hi - m["mean"], 0)]],
                        marker="s", mfc="none", capsize=3, color=line.lines[0].get_color())
    ax.set_xscale("log")
    ticks = [x0, *d["dose_tokens"]]  # the dose targets (each task at its achieved count)
    ax.set_xticks(ticks, ["base"] + [f"{v:,.0f}" for v in ticks[1:]], fontsize=7,
                  rotation=30)
    ax.minorticks_off()
    ax.axhline(1.0, color="k", lw=0.5, ls=":")
    ax.set_xlabel("supervised tokens per task (log scale)")
    ax.set_ylabel("predicted speed-up (SD / AR)")
    ax.set_title(f"{d['arm']}: data dose at fixed epochs (open squares: measured)")
    ax.legend(fontsize=7, ncol=2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
