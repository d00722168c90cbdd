"""Which training sequences each point of the data dose trains on (pure: no model code).

A dose is in prompt fractions (``prompt_fractions``: the first ``ceil(f * n)`` of a task's
``n`` training sequences, in their order) or in supervised tokens (``dose_tokens``, issue 29:
the first sequences of a task, in a seeded hash order of their ids, whose training texts --
their response positions, the loss's -- reach that many tokens; a task holding fewer gives all
it has, and the count achieved is what every record and figure reports). Either way only the
``dose_tasks`` (``[]``: every task) are cut; the other tasks train on all their sequences at
every point, so their curves are the dose's collateral. A smaller dose is a prefix of a larger
one, task by task.

With ``dose_tokens`` the arms train on the largest dose (:func:`arms_train`): the arm at budget
1.0 *is* the largest dose's point, its further seeds are that point's seeds, and the overfit
check trains on it.
"""

from __future__ import annotations

import hashlib
import math

from specfair.study.config import StudyConfig
from specfair.study.data import Seq


def dose_name(arm: str, point: float, tokens: bool = False) -> str:
    """The ``arm`` of a data-dose point in ``eval.jsonl``: ``uniform@0.25`` (a prompt
    fraction), ``uniform@1500tok`` (``tokens``: supervised tokens per dose task)."""
    return f"{arm}@{int(point)}tok" if tokens else f"{arm}@{point:g}"


def point_name(cfg: StudyConfig, point: float) -> str:
    """:func:`dose_name` of one of ``cfg``'s dose points (``cfg.dose_points``)."""
    return dose_name(cfg.dose_arm, point, bool(cfg.dose_tokens))


def _order(seqs: list[Seq], seed: int) -> list[Seq]:
    """``seqs`` in a seeded hash order of their ids: a prefix is a random sample of the task,
    not its file's first rows (HSK's are sorted by level)."""
    return sorted(seqs, key=lambda s: (hashlib.sha256(f"dose:{seed}:{s.id}".encode())
                                       .hexdigest(), s.id))


def first_reaching(seqs: list[Seq], tokens: int) -> list[Seq]:
    """The shortest prefix of ``seqs`` whose response tokens add up to at least ``tokens``
    (all of them when they hold fewer)."""
    out, have = [], 0
    for s in seqs:
        if have >= tokens:
            break
        out.append(s)
        have += s.n_resp
    return out


def dose_subset(seqs: list[Seq], tasks: list[str], fraction: float,
                dosed=lambda t: True) -> list[Seq]:
    """The first ``ceil(fraction * n)`` of each ``dosed`` task's ``n`` training sequences (one
    per distinct prompt), in their order, and all of the other tasks': a smaller fraction's
    subset is in every larger one's."""
    out = []
    for t in tasks:
        mine = [s for s in seqs if s.task == t]
        out += mine[: max(1, math.ceil(fraction * len(mine) - 1e-9))] if dosed(t) else mine
    return out


def token_subset(seqs: list[Seq], cfg: StudyConfig, tokens: int) -> list[Seq]:
    """Each dose task's first sequences (seeded hash order, :func:`first_reaching`) whose
    response tokens reach ``tokens``; all of every other task's, in their order."""
    out = []
    for t in cfg.tasks:
        mine = [s for s in seqs if s.task == t]
        out += first_reaching(_order(mine, cfg.seed), tokens) if cfg.doses_task(t) else mine
    return out


def subset(seqs: list[Seq], cfg: StudyConfig, point: float) -> list[Seq]:
    """The training sequences of one dose point (``point``: a prompt fraction or, with
    ``dose_tokens``, supervised tokens per dose task)."""
    if cfg.dose_tokens:
        return token_subset(seqs, cfg, int(point))
    return dose_subset(seqs, list(cfg.tasks), point, cfg.doses_task)


def arms_train(seqs: list[Seq], cfg: StudyConfig) -> list[Seq]:
    """What the arms train on: with ``dose_tokens`` the largest dose, else every sequence."""
    return token_subset(seqs, cfg, max(cfg.dose_tokens)) if cfg.dose_tokens else list(seqs)


def counts(seqs: list[Seq], tasks: list[str]) -> dict[str, dict[str, int]]:
    """Per task: distinct training prompts, their supervised (response) tokens and their prompt
    tokens (one pass over them: what one epoch trains on)."""
    out = {t: {"prompts": 0, "supervised_tokens": 0, "prompt_tokens": 0} for t in tasks}
    for s in seqs:
        c = out[s.task]
        c["prompts"] += 1
        c["supervised_tokens"] += s.n_resp
        c["prompt_tokens"] += s.n_prompt
    return out


def dose_fields(sub: list[Seq], cfg: StudyConfig, point: float) -> dict[str, dict]:
    """The fields each record of a dose point carries, per task: ``dose_prompts``,
    ``dose_supervised_tokens``, ``dose_prompt_tokens`` (one epoch of the task's training
    sequences at this point) and the point (``prompt_fraction``; or ``dose_tokens``, the
    target, with ``dose_reached``: whether the task's data reached it; a task the dose does not
    vary: ``dose_tokens`` None)."""
    out = {}
    for t, c in counts(sub, list(cfg.tasks)).items():
        f = {"dose_prompts": c["prompts"], "dose_supervised_tokens": c["supervised_tokens"],
             "dose_prompt_tokens": c["prompt_tokens"]}
        if cfg.dose_tokens:
            dosed = cfg.doses_task(t)
            f |= {"dose_tokens": int(point) if dosed else None,
                  "dose_reached": c["supervised_tokens"] >= point if dosed else None}
        else:
            f["prompt_fraction"] = point
        out[t] = f
    return out
