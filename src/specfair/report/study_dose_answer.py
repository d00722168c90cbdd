"""The first paragraph of a data-dose run's report (issue 29 item 7), from ``summary.json``'s
``data_dose.verdicts``, ``power.checks`` and the drafting policies, with ``timed.json`` where
the largest dose was timed (read defensively: any field may be absent): per dose task whether
its predicted speed-up rises beyond its paired CI (and at which dose), saturates (and from
which supervised-token count) or is undecided (and why); the gap with the best policy alone,
fine-tuning alone and both; what would overturn the answer; what a user should do; the
'lossless' caveat of the dtype the timed runs computed in; and one figure: the dose tasks'
predicted speed-up against their supervised tokens (log x, CIs), the other tasks' collateral
dashed, the timed speed-up at the largest dose beside it.

The gap (issue 29 items 5 and 7) is measured where ``timed.json`` has it: per dose task the
speed-up over plain decoding of the base drafter and the tuned one (the dose arm at the
largest dose, first seed) at the stage's fixed γ (its ``drafters`` block) and under the
deployed policy (its ``policies`` block: ``adaptive+hybrid`` where timed, else the other timed
policy fastest for the base drafter, and the paragraph says which), HF assisted generation's
defaults (``hf_assisted``), each with its CI, their max/min over the dose tasks, and the tuned
drafter's paired gain over the base under each policy (whether it leaves 1 beyond its CI);
where nothing was timed (old runs have no ``policies`` block), the replay's predictions,
marked predicted. Nothing here computes a statistic but max/min and a difference of two
predictions.
"""

from __future__ import annotations

import io
import math

from specfair.report.doc import Block, Figure, Para, Table

ANSWER_FIGURE = "dose_answer.png"


def _ci(c: dict, nd: int = 2, sign: bool = True) -> str:
    f = f"{{:{'+' if sign else ''}.{nd}f}}"
    return f"{f.format(c['value'])} [{f.format(c['lo'])}, {f.format(c['hi'])}]"


def _timed(timed: dict | None, arm: str, t: str, key: str) -> dict | None:
    """A timed drafter's per-task CI (``{"mean", "lo", "hi"}``), None where absent."""
    return _m(_at(timed, "drafters", arm, "tasks", t, key))


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


def _sentence(s: dict, t: str, v: dict, g: dict) -> str:
    d = s["data_dose"]
    big = v["largest"]
    at_big = (f"at the largest dose ({big['supervised_tokens']:,} supervised tokens, "
              f"{len(big['seeds'])} seed(s)) Δ predicted speed-up {_ci(big['d_speedup'])}x")
    measured = _measured_gain(g, t)
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


def _overturn_and_do(s: dict, t: str, v: dict, g: dict) -> tuple[str, str]:
    """What would overturn the task's answer, and what a user should do, from its verdict."""
    d = s["data_dose"]
    pol = g["policy"] or "the best drafting policy (the gap table's)"
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
                f"tokens; use {pol} instead")
    return (f"{t}: nothing yet to overturn ({v['why']})",
            f"{t}: settle it first (a larger dose, or the check its reason names)")


DEPLOYED = "adaptive+hybrid"  # the policy users deploy (experiment_dose.toml's timed_policies)


def _at(d, *keys):
    """``d[k0][k1]...`` where every level is a dict, else None (timed.json read defensively)."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def _dict(x) -> dict:
    return x if isinstance(x, dict) else {}


def _m(c) -> dict | None:
    """A measured CI (``{"mean", "lo", "hi"}``) with a finite mean, else None."""
    ok = isinstance(c, dict) and isinstance(c.get("mean"), int | float)
    return c if ok and math.isfinite(c["mean"]) else None


def deployed_policy(timed: dict | None) -> tuple[str, str] | None:
    """The timed policy the gap puts beside the fixed γ, with why it is that one: ``DEPLOYED``
    where ``timed.json``'s ``policies`` holds it, else the other timed policy fastest for the
    base drafter over all prompts (chosen on the timed prompts themselves); None where no
    policy but the stage's own was timed (old runs have no ``policies`` block)."""
    pols = {k: v for k, v in _dict(_at(timed, "policies")).items()
            if isinstance(v, dict) and not v.get("own") and _at(v, "drafters")}
    if not pols:
        return None
    if DEPLOYED in pols:
        return DEPLOYED, "the policy users deploy"
    fast = {k: m["mean"] for k in pols if (m := _m(_at(pols[k], "drafters", "base", "overall")))}
    if not fast:
        return next(iter(pols)), "the only other timed policy"
    return (max(fast, key=fast.get), "the timed policy fastest for the base drafter over all "
            "prompts, chosen on the timed prompts themselves")


def _speedups(r: dict, t: str) -> list[tuple[float, str]]:
    """A comparison's predicted speed-up of ``t`` with the headline policy and with the policy
    best on the held-out passes (the in-sample oracle where the run has none), each with the
    name of that policy."""
    pol = r["policies"]
    fixed = next(iter(pol))
    held = r.get("policies_heldout")
    best = (max(held, key=lambda x: held[x][t]) if held else
            max(pol, key=lambda x: pol[x][t]["speedup"]))
    return [(pol[fixed][t]["speedup"], fixed), (pol[best][t]["speedup"], best)]


def _cell(c: dict | None, source: str, how: str = "", ratio: bool = False) -> dict:
    """One cell of the gap: ``{"value", "text", "source", "ci"}``; ``c`` a CI (measured:
    ``mean``/``lo``/``hi``; predicted: ``value``/``lo``/``hi``, or a bare number), None: –.
    A predicted cell says so (and ``how``, its policy or kind)."""
    if c is None:
        return {"value": None, "text": "–", "source": None, "ci": None}
    if not isinstance(c, dict):
        c = {"value": c}
    v = c.get("mean", c.get("value"))
    ci = (c["lo"], c["hi"]) if c.get("lo") is not None and c.get("hi") is not None else None
    if source == "measured":
        f = "{:.3f}" if ratio else "{:.2f}"
        text = f.format(v) + (f" [{f.format(ci[0])}, {f.format(ci[1])}]" if ci else "")
    else:
        f = "{:+.2f}" if ratio else "{:.2f}"  # a predicted gain is the paired difference
        text = (("Δ" if ratio else "") + f.format(v)
                + (f" [{f.format(ci[0])}, {f.format(ci[1])}]" if ci else "")
                + f" (predicted{': ' + how if how else ''})")
    return {"value": v, "text": text, "source": source, "ci": ci}


def gap(s: dict, timed: dict | None) -> dict:
    """Per dose task the speed-up over plain decoding of the base drafter at the headline fixed
    γ (a), under the deployed policy (b), the tuned drafter (the dose arm at the largest dose)
    at the fixed γ (c) and under the policy (d), HF assisted generation's defaults (e), and the
    tuned drafter's gain over the base under each policy: measured where ``timed.json`` has it
    (speed-ups and paired ratios with their 95% CIs over prompts), else the replay's
    prediction (the best replayed policy in place of the timed one; the gain a paired Δ
    predicted speed-up, under the policy without a CI). ``{"fixed", "policy", "why",
    "columns": [(key, header)], "cells": {task: {key: cell}}}`` (cells: :func:`_cell`)."""
    d, base = s["data_dose"], s["base"]
    big, arm = d["points"][-1], d["arm"]
    fixed = next(iter(base["policies"]))
    dp = deployed_policy(timed)
    pol, why = dp if dp else (None, "")
    own = _at(timed, "drafters")
    under = _at(timed, "policies", pol, "drafters") if pol else None
    hf = _at(timed, "hf_assisted")

    def meas(block, name, t, key):
        return _m(_at(block, name, "tasks", t, key))

    cells = {}
    for t in d["dose_tasks"]:
        _, (pb, best_b) = _speedups(base, t)
        _, (pd, best_d) = _speedups(big, t)
        row = {}
        for key, block, name, pred, how in (
                ("a", own, "base", base["tasks"][t]["speedup"], ""),
                ("b", under, "base", pb, best_b),
                ("c", own, arm, big["tasks"][t]["speedup"], ""),
                ("d", under, arm, pd, best_d)):
            m = meas(block, name, t, "speedup")
            row[key] = _cell(m, "measured") if m else _cell(pred, "predicted", how)
        m = meas({"hf": hf}, "hf", t, "speedup")
        row["e"] = _cell(m, "measured") if m else _cell(None, "")
        m = meas(own, arm, t, "vs_base")
        row["g_fixed"] = (_cell(m, "measured", ratio=True) if m else
                          _cell(big["tasks"][t]["d_speedup"], "predicted", ratio=True))
        m = meas(under, arm, t, "vs_base")
        row["g_policy"] = (_cell(m, "measured", ratio=True) if m else
                           _cell(pd - pb, "predicted", "no CI" if best_b == best_d else
                                 f"{best_d} - {best_b}", ratio=True))
        cells[t] = row
    shown = pol or "best policy (replayed)"
    cols = [("a", f"base drafter, {fixed}"), ("b", f"base drafter, {shown}"),
            ("c", f"tuned ({arm}, largest dose), {fixed}"), ("d", f"tuned, {shown}"),
            ("e", "HF assisted (defaults, base drafter)"),
            ("g_fixed", f"tuned ÷ base, {fixed}"), ("g_policy", f"tuned ÷ base, {shown}")]
    return {"fixed": fixed, "policy": pol, "why": why, "columns": cols, "cells": cells}


SPEEDUPS = ("a", "b", "c", "d", "e")
NO_POLICY = ("no deployed policy timed: the best replayed policy per task (chosen on the "
             "held-out passes, the in-sample oracle where the run has none; scored on test)")


def _spread(g: dict, key: str) -> dict | None:
    """A speed-up column's min, max and max/min over the dose tasks and its source, where every
    dose task has a value of one source (measured or predicted); else None."""
    col = [r[key] for r in g["cells"].values()]
    src = {c["source"] for c in col}
    if not col or None in src or len(src) > 1 or min(c["value"] for c in col) <= 0:
        return None
    lo, hi = min(c["value"] for c in col), max(c["value"] for c in col)
    return {"min": lo, "max": hi, "max_min": hi / lo, "source": src.pop()}


def gap_table(s: dict, timed: dict | None) -> Table:
    """:func:`gap` as a table, with each speed-up column's max/min over the dose tasks."""
    g = gap(s, timed)
    rows = [[t, *(r[k]["text"] for k, _ in g["columns"])] for t, r in g["cells"].items()]
    if len(rows) > 1:
        spread = [_spread(g, k) if k in SPEEDUPS else None for k, _ in g["columns"]]
        rows.append(["max/min", *("–" if not x else f"{x['max_min']:.2f}"
                                  + ("" if x["source"] == "measured" else " (predicted)")
                                  for x in spread)])
    pol = f"{g['policy']}: {g['why']}" if g["policy"] else NO_POLICY
    return Table(["task", *(h for _, h in g["columns"])], rows,
                 "The gap: speed-up over plain decoding per dose task, measured (timed: mean "
                 "[95% CI over prompts]; the tuned drafter ÷ the base drafter on the same "
                 "prompts, paired CI) where timed.json has it, else the replay's prediction, "
                 "marked (predicted; its gain the paired Δ predicted speed-up); the policy beside "
                 f"the fixed γ: {pol}", ["l"] + ["r"] * len(g["columns"]))


def _beyond(c: dict) -> str:
    """Whether a measured ratio's CI leaves 1, in words."""
    if not c["ci"]:
        return "no CI"
    lo, hi = c["ci"]
    return ("above 1 beyond its CI: the tuned drafter is faster" if lo > 1 else
            "below 1 beyond its CI: the tuned drafter is slower" if hi < 1 else
            "1 within its CI")


def _measured_gain(g: dict, t: str) -> str:
    """The task's measured gain of the tuned drafter over the base under each timed policy."""
    parts = [f"{r['text']} under {g['fixed'] if k == 'g_fixed' else g['policy']}, {_beyond(r)}"
             for k in ("g_fixed", "g_policy")
             if (r := g["cells"][t][k])["source"] == "measured"]
    return ("; measured (timed), the tuned drafter's speed-up ÷ the base drafter's (paired 95% "
            "CI): " + "; ".join(parts)) if parts else ""


def _gap_sentence(g: dict, s: dict, timed: dict | None) -> str:
    """The gap over the dose tasks: each of (a)-(e)'s range and max/min, measured or
    predicted."""
    fixed, arm = g["fixed"], s["data_dose"]["arm"]
    pol = g["policy"] or "the replay's best policy per task"
    names = {"a": f"the base drafter at {fixed}", "b": f"the best policy alone ({pol})",
             "c": f"fine-tuning alone ({arm} at the largest dose, {fixed})",
             "d": f"both ({arm}, {pol})", "e": "HF assisted generation's defaults"}
    parts = []
    for k in SPEEDUPS:
        x = _spread(g, k)
        if x is None:
            some = {r[k]["source"] for r in g["cells"].values()} - {None}
            parts.append(f"{names[k]} {'partly measured (the table)' if some else 'not timed'}")
        else:
            parts.append(f"{names[k]} {x['min']:.2f}–{x['max']:.2f}x, max/min "
                         f"{x['max_min']:.2f} ({x['source']})")
    how = f"{g['policy']}: {g['why']}" if g["policy"] else NO_POLICY
    timed_at = (f"; timed on up to {_at(timed, 'n_per_task')} prompts per task at "
                f"{_at(timed, 'max_new_tokens')} new tokens" if _at(timed, "drafters") else "")
    return (f"The gap over the dose tasks (speed-up over plain decoding, lowest–highest task; "
            f"the policy: {how}{timed_at}): " + "; ".join(parts) + ".")


def _lossless(timed: dict | None, s: dict) -> str:
    """The share of timed SD answers equal to plain decoding's, in the dtype they ran in."""
    dts = s.get("timed_dtype")
    blocks = list(_dict(_at(timed, "drafters")).items())
    blocks += [(f"{n} under {label}", v) for label, p in _dict(_at(timed, "policies")).items()
               if isinstance(p, dict) and not p.get("own")
               for n, v in _dict(_at(p, "drafters")).items()]
    blocks.append(("HF assisted", _at(timed, "hf_assisted")))
    rows = [(n, v["sd_matches_ar"], sum(_dict(x).get("n") or 0
                                        for x in _dict(v.get("tasks")).values()))
            for n, v in blocks if isinstance(v, dict) and v.get("sd_matches_ar") is not None]
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
    g = gap(s, timed)
    parts = [_overturn_and_do(s, t, v, g) for t, v in ver.items()]
    out: list[Block] = [
        Para(head + " ".join(_sentence(s, t, v, g) for t, v in ver.items()) + " "
             + _gap_sentence(g, s, timed), kind="answer"),
        gap_table(s, timed),
        Para("What would overturn it: " + "; ".join(o for o, _ in parts) + ". What to do: "
             + "; ".join(w for _, w in parts) + ". " + _lossless(timed, s)),
        Figure(ANSWER_FIGURE, answer_figure(s, timed),
               "Predicted speed-up per task against its supervised tokens (log scale; bars: "
               "95% CI over seeds and prompts; the base drafter at the left, 'base'); the dose "
               "tasks solid, the other tasks (collateral) dashed at the dose tasks' mean dose; "
               "open squares: the measured (timed) speed-up at the largest dose, with its CI"
               + (f"; open diamonds: the same under {g['policy']}" if g["policy"] else "")
               + ".")]
    return out


def answer_figure(s: dict, timed: dict | None) -> bytes:
    """The dose tasks' predicted speed-up against their supervised tokens (log x, CIs), the
    other tasks dashed (collateral), the base drafter at the left, the timed speed-up at the
    largest dose beside the predicted one (and under the deployed policy, where timed)."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    d, tasks = s["data_dose"], list(s["config"]["tasks"])
    dosed = set(d["dose_tasks"])
    pol = (deployed_policy(timed) or (None,))[0]
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
        under = _m(_at(timed, "policies", pol, "drafters", d["arm"], "tasks", t, "speedup"))
        for m, dx, mk in ((_timed(timed, d["arm"], t, "speedup"), 1.12, "s"),
                          (under if pol else None, 1.25, "D")):
            if m is None:
                continue
            lo, hi = (m["mean"] if m.get(k) is None else m[k] for k in ("lo", "hi"))
            ax.errorbar([xs[-1] * dx], [m["mean"]],
                        yerr=[[max(m["mean"] - lo, 0)], [max(hi - m["mean"], 0)]],
                        marker=mk, mfc="none", capsize=3, color=line.lines[0].get_color())
    ax.set_xscale("log")
    ticks = [x0, *d["dose_tokens"]]  # the dose targets (each task at its achieved count)
    ax.set_xticks(ticks, ["base"] + [f"{v:,.0f}" for v in ticks[1:]], fontsize=7,
                  rotation=30)
    ax.minorticks_off()
    ax.axhline(1.0, color="k", lw=0.5, ls=":")
    ax.set_xlabel("supervised tokens per task (log scale)")
    ax.set_ylabel("speed-up (SD / AR)")
    ax.set_title(f"{d['arm']}: data dose at fixed epochs (open: measured"
                 + (f"; ◇ under {pol})" if pol else ")"), fontsize=10)
    ax.legend(fontsize=7, ncol=2)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
