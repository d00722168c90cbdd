"""The experiment's training stages (:mod:`specfair.study.run` runs them in order, on its
``Run``): the base drafter's evaluation, each arm trained to every budget with the first seed
(``arms/``) and to the largest with each further seed (``arms/seed<N>/``), and the data dose
(``arms/dose/``), every copy evaluated on the test sequences (``eval.jsonl``) and the held-out
prompts' target answers (``policy_eval.jsonl``).

Resume is by item (:mod:`specfair.study.records`): a stage owes one record per (arm, budget,
seed, prompt) in each file it appends to and appends only those missing; a copy resumes from
its last checkpoint: the one of each budget it reached, and one on the way to the next budget
every ``SPECFAIR_CHECKPOINT_S`` seconds (default 600; 0: after every step), so that a run
stopped mid-way (a session's end) loses at most that much of a copy's training.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from specfair.atomic import write_text
from specfair.distill.topn import (
    TopLayers,
    TrainState,
    drop_moments,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    train_sampled,
)
from specfair.distill.weighting import TaskSampler
from specfair.errors import SpecfairError
from specfair.measure.io import notice, read_json, read_jsonl
from specfair.measure.progress import say
from specfair.study import retrained
from specfair.study.config import copy_tokens
from specfair.study.data import Seq
from specfair.study.dose import dose_fields, dose_subset, point_name, subset
from specfair.study.records import Records

__all__ = ["dose_subset", "stage_arm", "stage_base", "stage_dose", "top_at_largest",
           "weights_kept"]

_say = functools.partial(say, "study")


def budget_tokens(run) -> int:
    """Training tokens of the largest budget: ``epochs`` passes over the training sequences."""
    return copy_tokens(run.cfg.epochs, [len(s.ids) for s in run.train])


def stage_base(run, out: Path) -> None:
    """The base drafter on the held-out prompts' target answers (``policy_eval.jsonl``) and the
    test sequences (``out``): the records missing from either."""
    tags = {"arm": "base", "budget": 0.0}
    todo = [(Records(run.dir / "policy_eval.jsonl"), run.policy), (Records(out), run.test)]
    todo = [(f, seqs) for f, seqs in todo if f.lacks(seqs, **tags)]
    if not todo:
        return
    _say("evaluating the base drafter")
    top = run.fresh_top()
    for f, seqs in todo:
        f.append(run.eval_records(top, seqs, **tags, tokens=0, supervised_tokens=0,
                                  prompt_tokens=0))


def _heldout_alphas(run, top) -> dict[str, float]:
    recs = run.eval_records(top, run.heldout)
    return {t: sum(r["alpha"] for r in recs if r["task"] == t) /
            max(1, sum(r["task"] == t for r in recs)) for t in run.cfg.tasks}


CHECKPOINT_ENV = "SPECFAIR_CHECKPOINT_S"


def checkpoint_seconds() -> float:
    """Seconds between a copy's checkpoints on the way to a budget (``SPECFAIR_CHECKPOINT_S``,
    default 600; 0: after every step); anything else is one error."""
    raw = os.environ.get(CHECKPOINT_ENV, "600")
    try:
        x = float(raw)
    except ValueError:
        x = math.nan
    if not (math.isfinite(x) and x >= 0):
        raise SpecfairError(f"{CHECKPOINT_ENV}={raw!r}: the seconds between a training copy's "
                            "checkpoints, a number >= 0")
    return x


def _ckpt_meta(ckpt: Path) -> dict | None:
    """A copy's checkpoint's ``state.json`` (None: none there, or not whole: its weights or
    ``state.json`` missing, e.g. a run directory rebuilt from its records elsewhere). Its
    ``budget``: the last budget the copy reached (None: none yet); ``midway``: written on the
    way to the next one."""
    if not ((ckpt / "state.json").is_file() and (ckpt / "top.st").is_file()):
        return None
    return read_json(ckpt / "state.json")


def _ckpt_budget(ckpt: Path) -> float | None:
    """The budget a copy's checkpoint holds (None: none, or none reached yet)."""
    meta = _ckpt_meta(ckpt)
    return None if meta is None else meta["budget"]


def _train_one(run, name: str, seqs: list[Seq], tests: tuple[list[Seq], list[Seq]],
               rule: str, goal: int, seed: int, budgets: list[float],
               adir: Path | None = None, weights: bool = False) -> Path:
    """One trainable copy of the top layers, trained to each of ``budgets`` in turn and
    evaluated there on ``tests``: the test sequences (``<adir>/eval.jsonl``) and the held-out
    prompts' target answers (``policy_eval.jsonl``, written first); resumes from the last
    budget's checkpoint and appends only the records missing (a budget whose records are all
    there is not evaluated again; one below the checkpoint's, lost only by hand, is trained
    again from the start). ``seed`` draws the batches (the training's only randomness: the
    copy starts from the drafter's weights). ``rule``: the sampler's (``uniform``,
    ``disparity``), or ``task-mean``: drawn as ``uniform``, each batch's loss averaged per
    task instead of per position. ``weights``: the caller needs the copy's weights at the last
    of ``budgets``: a copy whose records are all there but whose checkpoint is not (not kept:
    a run directory continued elsewhere) is trained again from the start, its training log
    in ``retrain_log.jsonl`` (``train_log.jsonl`` stays the records'). A copy trained again
    while records of it exist is checked against them at the largest such budget
    (:func:`specfair.study.retrained.check`: ``retrained.json``); each budget's records get the
    digest of the weights they were made with first (``weights.jsonl``)."""
    cfg = run.cfg
    task_mean, rule = rule == "task-mean", "uniform" if rule == "task-mean" else rule
    adir = adir or run.dir / "arms" / name
    ckpt, evals = adir / "checkpoint", adir / "eval.jsonl"
    files = (Records(evals), Records(adir / "policy_eval.jsonl"))
    owed = [b for b in budgets
            if any(f.lacks(t, budget=b, seed=seed) for f, t in zip(files, tests, strict=True))]
    meta0 = _ckpt_meta(ckpt)
    held, midway = (None, False) if meta0 is None else (meta0["budget"],
                                                         bool(meta0.get("midway")))
    if not owed and not (weights and held != budgets[-1]):
        return evals
    torch.manual_seed(seed)
    top = run.fresh_top()
    opt = make_optimizer(top, cfg.lr)
    sampler = TaskSampler([s.task for s in seqs], rule, seed=seed,
                          temperature=cfg.disparity_temperature, floor=cfg.disparity_floor)
    state, reached = TrainState(), None
    if meta0 is not None:
        # records missing below the checkpoint's weights (lost by hand): from the start
        if owed and held is not None and (owed[0] <= held if midway else owed[0] < held):
            notice(f"{adir}: records of budget {owed[0]} missing, the checkpoint is "
                   f"{'past' if midway else 'at'} {held}: training again from the start")
        else:
            state, meta = load_checkpoint(ckpt, top, opt)
            sampler.load_state_dict(meta["sampler"])
            reached = meta["budget"]
            if midway:
                _say(f"{name}: resumed from its checkpoint at step {state.step} "
                     f"({state.tokens} tokens), on the way to the next budget")
    # trained again (the checkpoint gone) where records exist: checked at the largest such
    # budget; for the weights alone (every record there), logged beside the records' log
    # (a budget owed only some records, e.g. test prompts added since, is checked on the rest)
    some = {r["budget"] for r in files[0].held.values() if r.get("seed", seed) == seed}
    stored = [b for b in budgets if (b not in owed or b in some)
              and (reached is None or b > reached)]
    check = max(stored, default=None)
    redo = not owed
    log = Records(adir / (retrained.LOG if redo else "train_log.jsonl"), key=lambda r: r["step"])
    log.keep(lambda r: r["step"] <= state.step)  # steps past the checkpoint are redone
    if any(reached is None or b > reached for b in budgets):
        retrained.note_machine(adir, state.step, retrain=check is not None)
        if check is not None:
            _say(f"{name}: trained again from the start with seed {seed} (its checkpoint was "
                 f"not kept; records of budget(s) {', '.join(map(str, stored))} stored)")
    pool = [run.signals(s) for s in seqs]
    reest = max(1, len(seqs) // (4 * cfg.batch_size))  # ~4 re-estimates per epoch
    hook = (lambda step: sampler.update(_heldout_alphas(run, top))) if rule == "disparity" \
        else None
    digests = Records(adir / retrained.WEIGHTS, key=lambda r: r["budget"])
    every, saved = checkpoint_seconds(), [time.monotonic()]

    def on_the_way(st: TrainState) -> None:
        """A checkpoint on the way to budget ``b`` every ``every`` seconds (the budget's own
        is written when it is reached)."""
        if time.monotonic() - saved[0] >= every and st.tokens < int(b * goal):
            save_checkpoint(ckpt, top, opt, st, {"sampler": sampler.state_dict(),
                                                 "budget": reached, "midway": True})
            saved[0] = time.monotonic()

    for b in budgets:
        if reached is not None and b < reached:
            continue
        if b != reached:
            t0 = time.perf_counter()
            train_sampled(top, run.head, opt, state, pool, sampler, int(b * goal),
                          batch_size=cfg.batch_size, lr=cfg.lr, warmup=cfg.warmup_steps,
                          kind=cfg.loss, bf16=run.bf16, hook=hook, every=reest,
                          log=lambda r: log.append([r]),
                          checkpoint=ckpt if ckpt.is_dir() else None, task_mean=task_mean,
                          on_step=on_the_way)
            _say(f"{name}: budget {b:.2f}, {state.tokens} tokens "
                 f"({time.perf_counter() - t0:.0f} s)")
            if b == check:  # before the checkpoint: a kill in between checks again
                retrained.check(run, adir, name, top, tests[0], b, seed, state.step,
                                "records complete, checkpoint gone; its weights needed"
                                if redo else f"checkpoint gone, records of budget(s) "
                                f"{', '.join(map(str, owed))} missing", log=redo)
            save_checkpoint(ckpt, top, opt, state, {"sampler": sampler.state_dict(),
                                                    "budget": b})
            reached = b
        if b in owed:
            digests.append([{"budget": b, "step": state.step, "tokens": state.tokens,
                             "sha256": retrained.digest(top)}])
            tags = {"budget": b, "tokens": state.tokens, "seed": seed,
                    "supervised_tokens": state.supervised,
                    "prompt_tokens": None if state.supervised is None
                    else state.tokens - state.supervised}
            for f, t in zip(files[::-1], tests[::-1], strict=True):  # policy_eval first
                if f.lacks(t, **tags):
                    f.append(run.eval_records(top, t, **tags))
    if budgets[-1] == max(cfg.budgets) and ckpt.is_dir():
        drop_moments(ckpt)  # trained to the end: the weights are all anything reads again
    return evals


def weights_kept(run, arm: str) -> bool:
    """Whether every first-seed copy of ``arm`` still has its checkpoint at the largest budget
    (its weights load without training)."""
    return all(_ckpt_budget(d / "checkpoint") == max(run.cfg.budgets)
               for d in retrained.copy_dirs(run.dir, arm, list(run.cfg.tasks)).values())


def top_at_largest(run, name: str) -> TopLayers:
    """The top layers of ``arms/<name>`` (an arm, or ``per-task/<task>``; the first seed's) at
    the largest budget: its last checkpoint, or, where that is gone (a run directory continued
    from its records elsewhere), the copy trained again from the start with the same seed and
    settings and checked against its records (:mod:`specfair.study.retrained`)."""
    cfg = run.cfg
    arm, seed = name.split("/")[0], cfg.seeds[0]
    copies = {}
    if arm in cfg.arms:
        kind, train, goal, _ = _arm_setup(run, arm)
        copies = {c[0]: c for c in _copies(run, kind, arm, train, goal, _arm_dir(run, seed),
                                            run.policy)}
    if name not in copies:
        raise SpecfairError(f"no trained copy {name!r} in this study (arms: "
                            f"{', '.join(cfg.arms)})")
    c, seqs, tests, rule, g, adir = copies[name]
    _train_one(run, c, seqs, tests, rule, g, seed, cfg.budgets, adir, weights=True)
    ckpt = adir / "checkpoint"
    top = run.fresh_top()
    _, meta = load_checkpoint(ckpt, top, make_optimizer(top, cfg.lr))
    if meta["budget"] != max(cfg.budgets):
        raise SpecfairError(f"{ckpt}: trained to budget {meta['budget']}, not the largest "
                            f"({max(cfg.budgets)})")
    return top


def _arm_dir(run, seed: int) -> Path:
    """``arms/`` for the first seed (the whole budget curve), ``arms/seed<N>/`` for others."""
    return run.dir / "arms" if seed == run.cfg.seeds[0] else run.dir / "arms" / f"seed{seed}"


def _arm_owes(run, name: str, out: Path, seed: int, budgets: list[float],
              with_policy: bool) -> bool:
    """Whether ``out`` (and, ``with_policy``, ``policy_eval.jsonl``) lacks any record of arm
    ``name`` at ``budgets`` with ``seed``."""
    files = [(Records(out), run.test)]
    if with_policy:
        files.append((Records(run.dir / "policy_eval.jsonl"), run.policy))
    return any(f.lacks(seqs, arm=name, budget=b, seed=seed) for f, seqs in files
               for b in budgets)


def stage_arm(run, arm: str, out: Path, seed: int | None = None) -> None:
    """Train and evaluate one arm at every budget (the first of ``cfg.seeds``) or at the
    largest budget (the other seeds); its records join ``out`` (those missing there).
    ``per-task``: one copy per task, each ``epochs`` passes over its own task's sequences
    (:func:`copy_tokens`: the tokens and epochs ``uniform`` gives that task), oracle
    routing. ``monolingual``: ``uniform`` on the arm's own sequences (``run.mono``,
    :mod:`specfair.study.monolingual`: text in each translation task's output language) at
    ``epochs`` passes over them, each record with its task's training text
    (:meth:`~specfair.study.monolingual.Monolingual.fields`)."""
    cfg = run.cfg
    seed = cfg.seeds[0] if seed is None else seed
    budgets = cfg.budgets if seed == cfg.seeds[0] else cfg.budgets[-1:]
    if not _arm_owes(run, arm, out, seed, budgets, seed == cfg.seeds[0]):
        return
    kind, train, goal, extra = _arm_setup(run, arm)
    _say(f"arm {arm}, seed {seed}: {goal} training tokens at the largest budget")
    _train_arm(run, kind, arm, train, out, seed, budgets, goal, _arm_dir(run, seed),
               with_policy=seed == cfg.seeds[0], extra=extra)


def _arm_setup(run, arm: str) -> tuple[str, list[Seq], int, dict[str, dict] | None]:
    """``(kind, training sequences, tokens at budget 1.0, extra record fields per task)`` of
    ``arm``: ``monolingual`` trains as ``uniform`` on its own sequences at ``epochs`` passes."""
    if arm == "monolingual":
        train = run.mono.seqs
        return ("uniform", train, int(run.cfg.epochs * sum(len(s.ids) for s in train)),
                run.mono.fields())
    return arm, run.train, budget_tokens(run), None


def _copies(run, arm: str, name: str, train: list[Seq], goal: int, root: Path,
            held: list[Seq]) -> list[tuple]:
    """``arm``'s copies as ``(name, training sequences, (test, held-out) sequences, rule,
    tokens at budget 1.0, directory)``: ``per-task`` one per task on its own sequences at
    ``epochs`` passes over them (:func:`copy_tokens`), others one on ``train`` (``goal``)."""
    if arm == "per-task":
        of = lambda seqs, t: [s for s in seqs if s.task == t]  # noqa: E731
        return [(f"{name}/{t}", of(train, t), (of(run.test, t), of(held, t)), "uniform",
                 copy_tokens(run.cfg.epochs, [len(s.ids) for s in of(train, t)]),
                 root / name / t) for t in run.cfg.tasks]
    # uniform, task-mean (uniform, the loss averaged per task) or disparity
    return [(name, train, (run.test, held), arm, goal, root / name)]


def _train_arm(run, arm: str, name: str, train: list[Seq], out: Path, seed: int,
               budgets: list[float], goal: int, root: Path, with_policy: bool,
               extra: dict[str, dict] | None = None) -> None:
    """Train ``arm``'s copies on ``train`` (``goal`` tokens at budget 1.0) under ``root``,
    evaluate them, and append their records missing from ``out`` as arm ``name`` (with
    ``extra[task]`` fields) and, ``with_policy``, the held-out passes missing from
    ``policy_eval.jsonl``."""
    held = run.policy if with_policy else []
    files = [_train_one(run, c, seqs, tests, rule, g, seed, budgets, adir)
             for c, seqs, tests, rule, g, adir in _copies(run, arm, name, train, goal, root,
                                                          held)]

    def total(key: str) -> dict[float, int | None]:
        """Per budget, ``key`` summed over the copies (None where one lacks it)."""
        per = {b: {f: r.get(key) for f in files for r in read_jsonl(f) if r["budget"] == b}
               for b in budgets}
        return {b: None if None in v.values() else sum(v.values()) for b, v in per.items()}

    tokens, sup = total("tokens"), total("supervised_tokens")
    tag = lambda r: r | {  # noqa: E731
        "arm": name, "tokens": tokens[r["budget"]], "seed": seed,
        "supervised_tokens": sup[r["budget"]],
        "prompt_tokens": None if sup[r["budget"]] is None else tokens[r["budget"]] - sup[
            r["budget"]]} | (extra or {}).get(r["task"], {})
    if with_policy:
        Records(run.dir / "policy_eval.jsonl").append(
            [tag(r) for f in files for r in read_jsonl(f.with_name("policy_eval.jsonl"))
             if r["budget"] in tokens])
    Records(out).append([tag(r) for f in files for r in read_jsonl(f) if r["budget"] in tokens])


def stage_dose(run, out: Path, after_point: Callable[[], object] = lambda: None) -> None:
    """Dose in data (:mod:`specfair.study.dose`): ``cfg.dose_arm`` trained (first seed,
    ``epochs`` passes) on each dose point's training sequences -- the first fraction of each
    dose task's distinct prompts (``prompt_fractions``), or its first prompts whose training
    texts reach so many supervised tokens (``dose_tokens``) -- evaluated on the same test
    sequences as arm ``<arm>@<point>``, budget 1.0, each record with its task's counts at the
    point (:func:`~specfair.study.dose.dose_fields`). A point that trains on the arm's own
    sequences (fraction 1.0; the largest ``dose_tokens``) is the arm at budget 1.0 where the
    study trained it: its records (with ``dose_tokens``, those of every seed: the largest
    dose's seeds); it is taken first, so that the curve's end is in every summary.
    ``after_point`` runs after each point trained or taken here (the run's summary and report:
    a run stopped in the dose reports the points it measured)."""
    cfg, seed = run.cfg, run.cfg.seeds[0]
    for point in sorted(cfg.dose_points, key=lambda p: p != max(cfg.dose_points)):
        name = point_name(cfg, point)
        sub = subset(run.train, cfg, point)
        extra = dose_fields(sub, cfg, point)
        whole = ({s.id for s in sub} == {s.id for s in run.train} if cfg.dose_tokens
                 else point == 1.0)
        seeds = cfg.seeds if cfg.dose_tokens else [seed]
        same = [r for r in read_jsonl(out) if r["arm"] == cfg.dose_arm and r["budget"] == 1.0
                and r.get("seed", 0) in seeds] if whole else []
        if same:
            if Records(out).append([r | {"arm": name} | extra[r["task"]] for r in same]):
                after_point()
            continue
        if not _arm_owes(run, name, out, seed, [1.0], with_policy=False):
            continue
        goal = int(cfg.epochs * sum(len(s.ids) for s in sub))
        dosed = [t for t in cfg.tasks if cfg.doses_task(t)]
        _say(f"data dose {name}: {len(sub)} training prompts, {goal} training tokens; per dose "
             "task prompts / supervised / prompt tokens: " + ", ".join(
                 f"{t} {extra[t]['dose_prompts']} / {extra[t]['dose_supervised_tokens']} / "
                 f"{extra[t]['dose_prompt_tokens']}" for t in dosed))
        (run.dir / "arms" / "dose" / name).mkdir(parents=True, exist_ok=True)
        write_text(run.dir / "arms" / "dose" / name / "prompts.json",
                   json.dumps([s.id for s in sub]))
        _train_arm(run, cfg.dose_arm, name, sub, out, seed, [1.0], goal,
                   run.dir / "arms" / "dose", with_policy=False, extra=extra)
        after_point()
