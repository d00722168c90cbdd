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

from specfair.measure.replay import (
    ONE_HELD,
    ONE_ORACLE,
    POLICIES,
    TASK_HELD,
    TASK_ORACLE,
    Policy,
    replay_all,
)

GAMMAS = range(1, 11)

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
