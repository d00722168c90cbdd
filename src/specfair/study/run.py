"""``specfair experiment [demo|study|full|FILE]``: the experiment, stage by stage, resumable
(one runner for every size; the sizes differ only in their :class:`StudyConfig`).

1. prompts: the ``study`` suite (``specfair data fetch``), per task ``n_train`` + ``n_heldout``
   train prompts and ``n_test`` test prompts;
2. sequences: the target's greedy test responses; the training text (references, else drafter
   continuations);
3. signals: the target's top-k and the drafter's lower-layer hidden states for every sequence
   (the only target forward passes of the study);
4. overfit check: one task's train sequences, several epochs; greedy alpha on those sequences
   before and after (a pipeline that cannot overfit cannot help);
5. arms x budgets: the base drafter, then each arm trained with checkpoints at each budget (a
   fraction of the largest budget's training tokens, constant learning rate after warm-up, so a
   checkpoint is the same as a shorter run) and evaluated on the test sequences;
6. summary: ``summary.json`` (see :mod:`specfair.study.summary`);
7. timed: each arm's drafter at the largest budget exported and benchmarked against the base
   drafter (``drafters/``, ``timed/``, ``timed.json``: see :mod:`specfair.study.timed`);
8. report: ``report.md`` and ``report.html`` from the stored records
   (:mod:`specfair.report.study`).

Every evaluation is a line of ``eval.jsonl`` (arm, budget, tokens, prompt, task, alpha, greedy,
ce, resid); a finished (arm, budget) is never redone; an arm resumes from its last checkpoint.
"""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import torch

from specfair.distill.topn import (
    Signals,
    TopLayers,
    TrainState,
    evaluate,
    load_checkpoint,
    make_optimizer,
    save_checkpoint,
    train_until,
)
from specfair.distill.weighting import TaskSampler
from specfair.errors import SpecfairError
from specfair.measure.costs import measure_costs
from specfair.measure.io import append_jsonl, read_json, read_jsonl
from specfair.models.hardware import cpu_supports_bf16
from specfair.models.load import load_model, load_tokenizer
from specfair.report.study import write_report
from specfair.rundir import check_out_dir, dir_lock
from specfair.study.config import ANY_TIME_KEYS, TRAINING_KEYS, StudyConfig
from specfair.study.data import Seq, fill_signals, study_prompts, test_sequences, train_sequences
from specfair.study.summary import write_summary
from specfair.study.timed import export_arms, run_timed
from specfair.tasks.split import split_key
from specfair.tasks.study import STUDY_TASKS, load_study_suite


def _say(msg: str) -> None:
    print(f"[study {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class Run:
    """The run directory, the models and the cached sequences and signals."""

    def __init__(self, cfg: StudyConfig, run_dir: Path) -> None:
        self.cfg, self.dir = cfg, run_dir
        _check_settings(cfg, run_dir)
        cfg.check_tasks([t.name for t in STUDY_TASKS])
        suite = load_study_suite(seed=cfg.seed, tasks=cfg.tasks)  # the data are checked first
        prompts = study_prompts(cfg, suite)
        cfg.check_models()  # then the settings that depend on the models' configs
        self.prompts = prompts
        self.groups = {p.id: split_key(p)[:16] for p in prompts.test + prompts.heldout}
        self.tok = load_tokenizer(cfg.target)
        target = load_model(cfg.target, "auto", "auto")
        self.drafter = load_model(cfg.drafter, "auto", "auto")
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "study_config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
        _write_leakage(prompts.dropped, run_dir / "leakage.json")
        self.bf16 = cpu_supports_bf16() or torch.cuda.is_available()
        _say(f"CPU native bf16: {self.bf16}")
        t0 = time.perf_counter()
        self.test = test_sequences(cfg, target, self.tok, prompts.test, run_dir)
        self.train = train_sequences(cfg, target, self.drafter, self.tok, prompts.train, run_dir)
        cfg.check_budgets([len(s.ids) for s in self.train], [s.task for s in self.train])
        self.heldout = train_sequences(cfg, target, self.drafter, self.tok, prompts.heldout,
                                       run_dir)
        # the target's own answers to the held-out prompts: drafting policies are chosen there
        self.policy = test_sequences(cfg, target, self.tok, prompts.heldout, run_dir,
                                     "heldout_responses.jsonl")
        _say(f"sequences: {len(self.train)} train, {len(self.heldout)} held-out "
             f"(+ {len(self.policy)} target answers), {len(self.test)} test "
             f"({time.perf_counter() - t0:.0f} s)")
        t0 = time.perf_counter()
        self.teacher, self.lower = fill_signals(
            cfg, target, self.drafter, self.test + self.train + self.heldout + self.policy,
            run_dir)
        _say(f"signals ready ({time.perf_counter() - t0:.0f} s)")
        _measure_costs(target, self.drafter, self.test[0], run_dir / "costs.json")
        del target
        self.head = self.drafter.get_output_embeddings().weight.detach()
        self.head.requires_grad_(False)

    def signals(self, s: Seq) -> Signals:
        t, h = self.teacher.get(s.key), self.lower.get(s.key)
        return Signals(h["hidden"], t["topk_idx"], t["topk_logp"], s.n_prompt)

    def fresh_top(self) -> TopLayers:
        return TopLayers(self.drafter, self.cfg.top_layers)

    def eval_records(self, top: TopLayers, seqs: list[Seq], **tags) -> list[dict]:
        res = evaluate(top, self.head, [self.signals(s) for s in seqs], self.bf16)
        return [tags | {"id": s.id, "task": s.task, "group": self.groups.get(s.id)} | r
                for s, r in zip(seqs, res, strict=True)]


def _write_leakage(dropped: list[dict], path: Path) -> None:
    """``leakage.json``: the train-split prompts the leak check dropped, counted per task."""
    counts: dict[str, int] = {}
    for d in dropped:
        counts[d["task"]] = counts.get(d["task"], 0) + 1
    path.write_text(json.dumps({"n_dropped": len(dropped), "per_task": counts,
                                "dropped": dropped}, indent=2))
    _say(f"leak check: dropped {len(dropped)} train-split prompt(s) sharing a text with a test "
         f"prompt or reference" + (f" ({', '.join(f'{t} {n}' for t, n in counts.items())})"
                                   if counts else ""))


def _check_settings(cfg: StudyConfig, run_dir: Path) -> None:
    """A run directory holds one study: other settings are refused before anything runs,
    except settings of the training (``TRAINING_KEYS``) while nothing was trained yet (a
    study refused for its budgets, say, runs on with corrected ones)."""
    path = run_dir / "study_config.json"
    if path.is_file():
        old, new = read_json(path), cfg.to_dict()
        # a key newer than the run: its default; ANY_TIME_KEYS: any value
        old = StudyConfig().to_dict() | old | {k: new[k] for k in ANY_TIME_KEYS}
        diff = sorted(k for k in new if old.get(k) != new[k])
        trained = any((run_dir / n).exists() for n in ("eval.jsonl", "overfit.json", "arms"))
        if diff and (trained or not set(diff) <= set(TRAINING_KEYS)):
            raise SpecfairError(f"{run_dir} holds a study with other settings "
                                f"({', '.join(diff)}); use another --run-dir")


def _measure_costs(target, drafter, seq: Seq, path: Path) -> None:
    if path.is_file():
        return
    c = measure_costs(target, drafter, seq.ids[: seq.n_prompt])
    path.write_text(json.dumps(c, indent=2))
    _say(f"measured costs: c={c['c']:.3f}, v(k)=1+{c['verify_slope']:.3f}(k-1)")


# ---------------------------------------------------------------------------- stages


def _done(path: Path) -> set[tuple]:
    return {(r["arm"], r["budget"]) for r in read_jsonl(path, repair=True)}


def _write(path: Path, records: list[dict]) -> None:
    for r in records:
        append_jsonl(path, r)


def budget_tokens(run: Run) -> int:
    """Training tokens of the largest budget: ``epochs`` passes over the training sequences."""
    return int(run.cfg.epochs * sum(len(s.ids) for s in run.train))


def stage_base(run: Run, out: Path) -> None:
    if ("base", 0.0) in _done(out):
        return
    _say("evaluating the base drafter")
    top, tags = run.fresh_top(), {"arm": "base", "budget": 0.0, "tokens": 0}
    _write(run.dir / "policy_eval.jsonl", run.eval_records(top, run.policy, **tags))
    _write(out, run.eval_records(top, run.test, **tags))


def stage_overfit(run: Run, path: Path) -> dict:
    """Train on one task's train sequences; greedy alpha on those same sequences before and
    after. The task is the test-worst task of the base drafter."""
    if path.is_file():
        return read_json(path)
    base = [r for r in read_jsonl(run.dir / "eval.jsonl") if r["arm"] == "base"]
    by_task = {t: sum(r["alpha"] for r in base if r["task"] == t) for t in run.cfg.tasks}
    task = min(by_task, key=lambda t: by_task[t] / max(1, sum(r["task"] == t for r in base)))
    seqs = [s for s in run.train if s.task == task]
    epochs, lr = run.cfg.overfit_epochs, run.cfg.overfit_lr
    _say(f"overfit check on {task}: {len(seqs)} train sequences, {epochs} epochs")
    top = run.fresh_top()
    before = run.eval_records(top, seqs)
    opt = make_optimizer(top, lr)
    rng = random.Random(run.cfg.seed)
    sig = [run.signals(s) for s in seqs]
    t0 = time.perf_counter()
    state = train_until(top, run.head, opt, TrainState(),
                        lambda: rng.sample(sig, min(run.cfg.batch_size, len(sig))),
                        int(epochs * sum(len(s.ids) for s in seqs)), lr=lr,
                        warmup=run.cfg.warmup_steps, kind=run.cfg.loss, bf16=run.bf16)
    secs = time.perf_counter() - t0
    after = run.eval_records(top, seqs)
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    res = {"task": task, "n_sequences": len(seqs), "epochs": epochs, "lr": lr,
           "tokens": state.tokens,
           "seconds": secs, "tokens_per_s": state.tokens / secs,
           "greedy_before": mean(before, "greedy"), "greedy_after": mean(after, "greedy"),
           "alpha_before": mean(before, "alpha"), "alpha_after": mean(after, "alpha")}
    path.write_text(json.dumps(res, indent=2))
    _say(f"overfit: greedy alpha {res['greedy_before']:.3f} -> {res['greedy_after']:.3f} "
         f"({state.tokens / secs:.0f} training tokens/s)")
    return res


def _heldout_alphas(run: Run, top: TopLayers) -> dict[str, float]:
    recs = run.eval_records(top, run.heldout)
    return {t: sum(r["alpha"] for r in recs if r["task"] == t) /
            max(1, sum(r["task"] == t for r in recs)) for t in run.cfg.tasks}


def _train_one(run: Run, name: str, seqs: list[Seq], tests: tuple[list[Seq], list[Seq]],
               rule: str, goal: int) -> Path:
    """One trainable copy of the top layers, trained to each budget in turn and evaluated there
    on ``tests``: the test sequences (``arms/<name>/eval.jsonl``) and the held-out prompts'
    target answers (``policy_eval.jsonl``, written first); resumes from the last budget's
    checkpoint."""
    cfg = run.cfg
    adir = run.dir / "arms" / name
    ckpt, evals = adir / "checkpoint", adir / "eval.jsonl"
    have = {r["budget"] for r in read_jsonl(evals, repair=True)}
    if all(b in have for b in cfg.budgets):
        return evals
    top = run.fresh_top()
    opt = make_optimizer(top, cfg.lr)
    sampler = TaskSampler([s.task for s in seqs], rule, seed=cfg.seed,
                          temperature=cfg.disparity_temperature, floor=cfg.disparity_floor)
    state, reached = TrainState(), None
    if ckpt.is_dir():
        state, meta = load_checkpoint(ckpt, top, opt)
        sampler.load_state_dict(meta["sampler"])
        reached = meta["budget"]
    sig = {s.key: run.signals(s) for s in seqs}
    reest = max(1, len(seqs) // (4 * cfg.batch_size))  # ~4 re-estimates per epoch

    def draw():
        if rule == "disparity" and state.step % reest == 0:
            sampler.update(_heldout_alphas(run, top))
            top.train()
        return [sig[seqs[i].key] for i in sampler.sample(cfg.batch_size)]

    for b in cfg.budgets:
        if b in have or (reached is not None and b < reached):
            continue
        if b != reached:
            t0 = time.perf_counter()
            log = lambda r: append_jsonl(  # noqa: E731
                adir / "train_log.jsonl", r | {"weights": sampler.weights()})
            train_until(top, run.head, opt, state, draw, int(b * goal), lr=cfg.lr,
                        warmup=cfg.warmup_steps, kind=cfg.loss, bf16=run.bf16, log=log,
                        checkpoint=ckpt if ckpt.is_dir() else None)
            save_checkpoint(ckpt, top, opt, state, {"sampler": sampler.state_dict(),
                                                    "budget": b})
            _say(f"{name}: budget {b:.2f}, {state.tokens} tokens "
                 f"({time.perf_counter() - t0:.0f} s)")
        _write(adir / "policy_eval.jsonl",
               run.eval_records(top, tests[1], budget=b, tokens=state.tokens))
        _write(evals, run.eval_records(top, tests[0], budget=b, tokens=state.tokens))
    return evals


def stage_arm(run: Run, arm: str, out: Path) -> None:
    """Train and evaluate one arm at every budget; its records join ``out`` when complete.
    ``per-task``: one copy per task, each with an equal share of the tokens, oracle routing."""
    cfg = run.cfg
    if all((arm, b) in _done(out) for b in cfg.budgets):
        return
    goal = budget_tokens(run)
    _say(f"arm {arm}: {goal} training tokens at the largest budget")
    if arm == "per-task":
        of = lambda seqs, t: [s for s in seqs if s.task == t]  # noqa: E731
        files = [_train_one(run, f"per-task/{t}", of(run.train, t),
                            (of(run.test, t), of(run.policy, t)), "uniform",
                            goal // len(cfg.tasks))
                 for t in cfg.tasks]
    else:
        files = [_train_one(run, arm, run.train, (run.test, run.policy),
                            "uniform" if arm == "uniform" else "disparity", goal)]
    tokens = {b: sum({f: r["tokens"] for f in files for r in read_jsonl(f)
                      if r["budget"] == b}.values()) for b in cfg.budgets}
    held = {(r["budget"], r["id"]): r for f in files  # a redone budget's records replace
            for r in read_jsonl(f.with_name("policy_eval.jsonl"))}
    _write(run.dir / "policy_eval.jsonl",
           [r | {"arm": arm, "tokens": tokens[r["budget"]]} for r in held.values()])
    recs = [r for f in files for r in read_jsonl(f)]
    _write(out, [r | {"arm": arm, "tokens": tokens[r["budget"]]} for r in recs])


def run_study(cfg: StudyConfig, run_dir: str | Path) -> Path:
    """Run (or resume) the study into ``run_dir``; returns the summary path."""
    run_dir = check_out_dir(run_dir, "--run-dir")
    _check_settings(cfg, run_dir)
    with dir_lock(run_dir, "specfair experiment"):
        return _run_study(cfg, run_dir)


def _run_study(cfg: StudyConfig, run_dir: Path) -> Path:
    t0 = time.perf_counter()
    run = Run(cfg, run_dir)
    out = run_dir / "eval.jsonl"
    stage_base(run, out)
    stage_overfit(run, run_dir / "overfit.json")
    for arm in cfg.arms:
        stage_arm(run, arm, out)
    path = write_summary(run_dir, cfg)
    run_timed(run, export_arms(run))  # the timed stage (specfair.study.timed)
    write_report(run_dir)  # report.md, report.html (specfair.report.study)
    _say(f"done in {time.perf_counter() - t0:.0f} s: {path}")
    return path
