"""Drafting policies in the study, chosen in sample and out of sample (labelled as such).

Every policy of :data:`specfair.measure.replay.POLICIES` is replayed on the test passes (no
parameter of theirs is chosen on data). Fixed gamma (1-10) is chosen two ways, each per task
and as one gamma for all tasks (the gamma with the highest mean over tasks of the predicted
speed-up):

- **in-sample oracle**: chosen on the very test passes it is scored on, an upper bound (the
  choice sees the test);
- **out of sample**: chosen on the held-out passes (the target's greedy answers to the
  ``n_heldout`` train-split prompts per task, teacher-forced through the same drafter;
  ``policy_eval.jsonl``) and scored on the test passes.

The "best policy" of an arm is picked the same two ways: by its held-out speed-up on the
base-worst task (out of sample), and by its test speed-up (the in-sample oracle).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from specfair.measure.replay import POLICIES, Policy, replay_all

GAMMAS = range(1, 11)
TASK_ORACLE = "per-task gamma (in-sample oracle)"
ONE_ORACLE = "one gamma (in-sample oracle)"
TASK_HELD = "per-task gamma (chosen on held-out)"
ONE_HELD = "one gamma (chosen on held-out)"

Passes = Sequence[tuple[Sequence, Sequence]]


def _table(passes: Passes, c: float, v: float) -> dict[int, dict]:
    return {g: replay_all(passes, Policy("fixed", g), c, v) for g in GAMMAS}


def _pick(tables: Sequence[dict[int, dict]]) -> int:
    """The gamma with the highest mean speed-up over ``tables`` (the smallest on a tie)."""
    return max(GAMMAS, key=lambda g: float(np.mean([t[g]["speedup"] for t in tables])))


def study_policies(test: dict[str, Passes], held: dict[str, Passes], c: float,
                   v: float) -> tuple[dict[str, dict], dict[str, dict] | None]:
    """``(policies, held_scores)``. ``policies``: ``{label: {task: {"speedup", "alpha",
    "tokens_per_step"[, "gamma"]}}}`` on the test passes; ``held_scores``: ``{label: {task:
    speed-up on the held-out passes}}`` for the policies whose choice does not see the test
    (``None`` when a task has no held-out passes: runs made before they were recorded)."""
    tasks = list(test)
    out = {p.label: {t: replay_all(test[t], p, c, v) for t in tasks} for p in POLICIES}
    tt = {t: _table(test[t], c, v) for t in tasks}
    per = {t: _pick([tt[t]]) for t in tasks}
    one = _pick(list(tt.values()))
    out[TASK_ORACLE] = {t: {"gamma": per[t]} | tt[t][per[t]] for t in tasks}
    out[ONE_ORACLE] = {t: {"gamma": one} | tt[t][one] for t in tasks}
    if any(not held.get(t) for t in tasks):
        return out, None
    ht = {t: _table(held[t], c, v) for t in tasks}
    per = {t: _pick([ht[t]]) for t in tasks}
    one = _pick(list(ht.values()))
    out[TASK_HELD] = {t: {"gamma": per[t]} | tt[t][per[t]] for t in tasks}
    out[ONE_HELD] = {t: {"gamma": one} | tt[t][one] for t in tasks}
    scores = {p.label: {t: replay_all(held[t], p, c, v)["speedup"] for t in tasks}
              for p in POLICIES}
    scores[TASK_HELD] = {t: ht[t][per[t]]["speedup"] for t in tasks}
    scores[ONE_HELD] = {t: ht[t][one]["speedup"] for t in tasks}
    return out, scores


def _spread(r: dict, label: str, task: str) -> tuple[float, float]:
    sp = [v["speedup"] for v in r["policies"][label].values()]
    return r["policies"][label][task]["speedup"], max(sp) / min(sp)


def _gammas(per: dict[str, dict]) -> str:
    gs = {v["gamma"] for v in per.values()}
    return f"gamma={gs.pop()}" if len(gs) == 1 else \
        "gammas " + ", ".join(f"{t} {v['gamma']}" for t, v in per.items())


def _one_vs_per(r: dict) -> list[str]:
    """One gamma for all tasks against a gamma per task, out of sample and in sample."""
    out = []
    for how, one, per in (("out of sample (chosen on the held-out passes, scored on test)",
                           ONE_HELD, TASK_HELD),
                          ("in-sample oracle (chosen on the test passes themselves)",
                           ONE_ORACLE, TASK_ORACLE)):
        if one not in r["policies"]:
            out.append(f"  - {how}: not recorded in this run (no held-out passes)")
            continue
        cells = []
        for label in (one, per):
            sp = [v["speedup"] for v in r["policies"][label].values()]
            cells.append(f"{label.split(' (')[0]} ({_gammas(r['policies'][label])}): mean "
                         f"{np.mean(sp):.2f}x, worst {min(sp):.2f}x, max/min "
                         f"{max(sp) / min(sp):.2f}")
        out.append(f"  - {how}: " + "; ".join(cells))
    return out


def _best(r: dict, w: str) -> str:
    """The arm's best policy for the base-worst task ``w``, out of sample and in sample."""
    held = r.get("policies_heldout")
    parts = []
    if held:
        lab = max(held, key=lambda x: held[x][w])
        wb, mb = _spread(r, lab, w)
        parts.append(f"with the policy best on the held-out passes ({lab}): {w} {wb:.2f}x, "
                     f"max/min {mb:.2f}")
    else:
        parts.append("out-of-sample choice not recorded in this run")
    lab = max(r["policies"], key=lambda x: _spread(r, x, w)[0])
    wb, mb = _spread(r, lab, w)
    parts.append(f"in-sample oracle best ({lab}): {w} {wb:.2f}x, max/min {mb:.2f}")
    return "; ".join(parts)


def policy_table(s: dict, tasks: list[str]) -> list[str]:
    """Predicted speed-ups per drafting policy: the base drafter and each arm's largest
    budget (replayed on the teacher-forced test passes with the measured c and v)."""
    c = s["costs"]
    lines = ["", "## Drafting policy against fine-tuning: predicted speed-ups",
             "", f"Measured c = {c['c']:.3f}, v(k) = 1 + {c['verify_slope']:.3f} (k - 1). "
             "Gamma is chosen per task or once for all tasks either on the test passes "
             "themselves (in-sample oracle: an upper bound) or on the held-out train prompts' "
             "passes (out of sample); every number is scored on the test passes.", "",
             "| drafter | policy | " + " | ".join(tasks) + " | max/min |",
             "|" + " --- |" * (len(tasks) + 3)]
    rows = [s["base"]] + [a["budgets"][-1] for a in s["arms"].values()]
    for r in rows:
        for label, per in r["policies"].items():
            sp = [per[t]["speedup"] for t in tasks]
            lines.append(f"| {r['arm']} {r['budget']:.2f} | {label} | "
                         + " | ".join(f"{x:.2f}" for x in sp) + f" | {max(sp) / min(sp):.2f} |")
    return lines


def policy_answer(s: dict) -> list[str]:
    """Drafting policy alone, fine-tuning alone and both, on the base-worst task's predicted
    speed-up and the max/min speed-up ratio across tasks."""
    base, fixed = s["base"], POLICIES[0].label
    w = base["base_worst_task"]
    w0, m0 = _spread(base, fixed, w)
    out = ["", f"Drafting policy against fine-tuning (predicted speed-ups; {w} is the "
               f"base-worst task; base drafter with {fixed}: {w} {w0:.2f}x, max/min {m0:.2f}):"]
    for label in base["policies"]:
        if label != fixed:
            wt, mm = _spread(base, label, w)
            out.append(f"- policy alone, {label}: {w} {wt:.2f}x, max/min {mm:.2f} (no training)")
    out.append("- one gamma against a gamma per task (base drafter):")
    out += _one_vs_per(base)
    for name, a in s["arms"].items():
        r = a["budgets"][-1]
        wt, mm = _spread(r, fixed, w)
        out.append(f"- fine-tuning, {name} ({r['tokens']} tokens), with {fixed}: {w} "
                   f"{wt:.2f}x, max/min {mm:.2f}; combined {_best(r, w)}")
    return out
