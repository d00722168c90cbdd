"""``specfair experiment [demo|study|full|FILE]``: the experiment, stage by stage, resumable
(one runner for every size; the sizes differ only in their :class:`StudyConfig`).

1. prompts: the ``study`` suite (``specfair data fetch``), per task ``n_train`` + ``n_heldout``
   train prompts and ``n_test`` test prompts;
2. sequences: the target's greedy test responses; the training text (references, else drafter
   continuations); training texts that contain a test prompt, reference or answer are dropped
   (``leakage.json``);
3. signals: the target's top-k and the drafter's lower-layer hidden states for every sequence
   (the only target forward passes of the study);
4. overfit check: one task's train sequences, several epochs; greedy alpha on those sequences
   before and after (a pipeline that cannot overfit cannot help);
5. arms x budgets: the base drafter, then each arm trained with checkpoints at each budget (a
   fraction of the largest budget's training tokens, constant learning rate after warm-up, so a
   checkpoint is the same as a shorter run) and evaluated on the test sequences, with the first
   of ``seeds`` (``monolingual``: on text in each translation task's output language, built
   and scored in step 3, :mod:`specfair.study.monolingual`);
6. routing (with the ``per-task`` arm): a task router fitted on the train prompts, the copy
   each test prompt is routed to, every copy teacher-forced on every task's test sequences,
   routed against oracle routing (``routing/``, ``routing.json``: see
   :mod:`specfair.study.routing`);
7. summary: ``summary.json`` (see :mod:`specfair.study.summary`), after the index arm
   (``index_arm``, :mod:`specfair.study.index_arm`: the arms' training text, and each data
   dose's, as a SuffixDecoding index per task, teacher-forced on the test answers at no model
   cost; ``same_data.json``, rewritten before every summary: fine-tuning against the index of
   the same text);
8. timed: each arm's drafter (of ``timed_arms``) at the largest budget, first seed
   (``arms/<arm>``: the drafter the budget curve and the replayed prediction are of), exported
   and benchmarked against the base drafter, the per-task drafter routed by the task router
   (``drafters/``, ``timed/``, ``timed.json``: see :mod:`specfair.study.timed`);
9. report: ``report.md`` and ``report.html`` from the stored records
   (:mod:`specfair.report.study`) -- a first answer, of the first seed and the budget curve;
10. seeds of ``dose_arm``: that arm again with each further seed, to the largest budget only;
11. data dose: ``dose_arm`` on the first fraction of each task's distinct training prompts, at
    ``epochs`` passes, for each of ``prompt_fractions``;
12. seeds of the other arms (``seed_arms``: those a claim rests on), one arm after the other;
13. summary and report again after 11 and after each arm of 12 (the last one is the answer).

Stages 10-12 come after the timed stage so that a run stopped on a slow machine has its
measured speed-ups and a report first; they add CIs over seeds and the data-dose curve, one
arm complete (seeds and dose) before the next, and the report is rewritten after each, so a
run stopped early reports everything it measured.

Every evaluation is a line of ``eval.jsonl`` (arm, budget, tokens, seed, prompt, task, greedy,
alpha, alpha_lo, ce, resid). The training stages (base, arms, seeds, data dose) are
:mod:`specfair.study.arms`. Resume is by item (:mod:`specfair.study.records`): each stage owes
one record per (arm, budget, seed, prompt) in each file it appends to, appends only those
missing (a torn last line is cut off and redone), and never writes a key twice; an arm
resumes from its last checkpoint. A copy whose checkpoint is gone (a run directory continued
elsewhere from its records: docs/CONTRACTS.md says what to keep) is trained again from the
start only where a stage needs its weights, and checked against its records
(:mod:`specfair.study.retrained`).
"""

from __future__ import annotations

import functools
import gc
import json
import time
from pathlib import Path

import torch

from specfair.atomic import write_text
from specfair.distill.topn import (
    Signals,
    TopLayers,
    evaluate,
    train_copy,
)
from specfair.errors import SpecfairError
from specfair.measure.costs import measure_costs
from specfair.measure.io import read_json, read_jsonl
from specfair.measure.progress import say
from specfair.models.hardware import cpu_name, cpu_supports_bf16
from specfair.models.load import load_model, load_tokenizer
from specfair.models.memory import trim
from specfair.report.study import write_report
from specfair.rundir import check_out_dir, check_out_files, dir_lock
from specfair.study.arms import (
    checkpoint_seconds,
    stage_arm,
    stage_base,
    stage_dose,
    top_at_largest,
)
from specfair.study.config import ANY_TIME_KEYS, TRAINING_KEYS, StudyConfig
from specfair.study.data import (
    Seq,
    fill_signals,
    fill_target_final,
    study_prompts,
    test_sequences,
    train_sequences,
    training_text_leaks,
)
from specfair.study.dose import arms_train, counts
from specfair.study.index_arm import stage_index
from specfair.study.methods import Method, applied, read_methods, stage_methods
from specfair.study.monolingual import ARM as MONOLINGUAL
from specfair.study.monolingual import build as monolingual_train
from specfair.study.routing import stage_routing
from specfair.study.summary import write_summary
from specfair.study.timed import export_arms, run_timed
from specfair.tasks.split import split_key
from specfair.tasks.study import STUDY_TASKS, load_study_suite

_say = functools.partial(say, "study")


class Run:
    """The run directory, the models and the cached sequences and signals. ``method``: the
    top layers, learning rate and training text the method comparison chose
    (:mod:`specfair.study.methods`) in place of the configured ones (``self.cfg`` has them;
    ``study_config.json`` keeps the configured values)."""

    def __init__(self, config: StudyConfig, run_dir: Path, method: Method | None = None) -> None:
        cfg = applied(config, method) if method else config
        self.cfg, self.dir, self.method = cfg, run_dir, method
        _check_settings(config, run_dir)
        cfg.check_tasks([t.name for t in STUDY_TASKS])
        suite = load_study_suite(seed=cfg.seed, tasks=cfg.tasks)  # the data are checked first
        prompts = study_prompts(config, suite)  # the same prompts whichever method
        cfg.check_models()  # then the settings that depend on the models' configs
        self.prompts = prompts
        self.groups = {p.id: split_key(p)[:16] for p in prompts.test + prompts.heldout}
        self.tok = load_tokenizer(cfg.target)
        target = load_model(cfg.target, cfg.dtype, "auto")
        self.drafter = load_model(cfg.drafter, cfg.dtype, "auto")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text(run_dir / "study_config.json", json.dumps(config.to_dict(), indent=2))
        self.bf16 = {"float32": False, "bfloat16": True}.get(
            cfg.dtype, cpu_supports_bf16() or torch.cuda.is_available())
        _say(f"computes in bf16: {self.bf16} (dtype {cfg.dtype}; CPU native bf16: "
             f"{cpu_supports_bf16()})")
        t0 = time.perf_counter()
        self.test = test_sequences(cfg, target, self.tok, prompts.test, run_dir)
        self.train = train_sequences(cfg, target, self.drafter, self.tok, prompts.train, run_dir)
        text_leaks = training_text_leaks(
            self.train, self.test, prompts.test,
            lambda ids: self.tok.decode(list(ids), skip_special_tokens=True))
        gone = {d["id"] for d in text_leaks}
        self.train = [s for s in self.train if s.id not in gone]
        # texts this run dropped before it trained (none known for runs made before the check)
        old = run_dir / "leakage.json"
        before = ({d["id"] for d in read_json(old).get("training_texts", {}).get("dropped", [])}
                  if old.is_file() and "training_texts" in read_json(old) else set())
        _write_leakage(prompts.dropped, text_leaks, len(self.train) + len(gone),
                       run_dir / "leakage.json")
        trained = any((run_dir / n).exists() for n in ("overfit.json", "arms"))
        if trained and gone - before:
            raise SpecfairError(
                f"{run_dir} trained on {len(gone - before)} text(s) that contain a test prompt "
                "or answer (leakage.json, training_texts) before they were checked: its results "
                "are contaminated; run the study again in another --run-dir")
        self.train = arms_train(self.train, cfg)  # with dose_tokens: the largest dose
        c = counts(self.train, list(cfg.tasks))
        write_text(run_dir / "train_data.json", json.dumps(c, indent=2))
        if cfg.dose_tokens:
            _say(f"the arms train on the largest dose ({max(cfg.dose_tokens)} supervised tokens "
                 "per dose task): prompts / supervised / prompt tokens: " + ", ".join(
                     f"{t} {v['prompts']} / {v['supervised_tokens']} / {v['prompt_tokens']}"
                     for t, v in c.items()))
        cfg.check_budgets([len(s.ids) for s in self.train], [s.task for s in self.train])
        # the monolingual arm: text in each translation task's output language, as many
        # supervised tokens as the task's own (study.monolingual); scored with the others
        self.mono = (monolingual_train(cfg, self.tok, prompts, self.train, self.test, run_dir)
                     if MONOLINGUAL in cfg.arms else None)
        self.heldout = train_sequences(cfg, target, self.drafter, self.tok, prompts.heldout,
                                       run_dir)
        # the target's own answers to the held-out prompts: drafting policies are chosen there
        self.policy = test_sequences(cfg, target, self.tok, prompts.heldout, run_dir,
                                     "heldout_responses.jsonl")
        _say(f"sequences: {len(self.train)} train, {len(self.heldout)} held-out "
             f"(+ {len(self.policy)} target answers), {len(self.test)} test "
             f"({time.perf_counter() - t0:.0f} s)")
        t0 = time.perf_counter()
        # the test sequences' final states first: their teacher top-k comes from them
        self.final = fill_target_final(cfg, target, self.test, run_dir)
        self.teacher, self.lower = fill_signals(
            cfg, target, self.drafter, self.test + self.train + self.heldout + self.policy
            + (self.mono.new if self.mono else []), run_dir, self.final)
        _say(f"signals ready ({time.perf_counter() - t0:.0f} s)")
        _measure_costs(target, self.drafter, self.test[0], run_dir / "costs.json")
        # the target's output head alone: full-vocabulary distributions on the test sequences
        # (a copy: a view would keep the whole target's weight file mapped)
        self.target_head = target.get_output_embeddings().weight.detach().clone()
        self.target = target  # the method comparison may write other training texts
        self.head = self.drafter.get_output_embeddings().weight.detach()
        self.head.requires_grad_(False)

    def release_target(self) -> None:
        """Drop the target model (its head stays): nothing after the sequences needs it."""
        self.target = None
        trim()

    def release_models(self) -> None:
        """Drop the drafter and the target's head while a stage holds models of its own (the
        timed stage: the memory is the machine's, not twice the models');
        :meth:`load_models` brings them back for the stages after it."""
        self.drafter = self.head = self.target_head = self.target = None
        trim()

    def load_models(self) -> None:
        """The drafter and the target's head again, after :meth:`release_models`."""
        if self.target_head is None:
            target = load_model(self.cfg.target, self.cfg.dtype, "auto")
            self.target_head = target.get_output_embeddings().weight.detach().clone()
            del target
            trim()
        if self.drafter is None:
            self.drafter = load_model(self.cfg.drafter, self.cfg.dtype, "auto")
            self.head = self.drafter.get_output_embeddings().weight.detach()
            self.head.requires_grad_(False)

    def signals(self, s: Seq, teacher=None, lower=None) -> Signals:
        """``s``'s cached signals (``teacher``/``lower``: other stores, e.g. another layer's)."""
        t, h = (teacher or self.teacher).get(s.key), (lower or self.lower).get(s.key)
        final = self.final.get(s.key)["hidden"] if s.key in self.final else None
        return Signals(h["hidden"], t["topk_idx"], t["topk_logp"], s.n_prompt, final)

    def fresh_top(self) -> TopLayers:
        return TopLayers(self.drafter, self.cfg.top_layers)

    def top_at_largest(self, name: str) -> TopLayers:
        """The top layers of ``arms/<name>`` (the first seed's) at the largest budget: its
        last checkpoint, or the copy trained again from the start where the checkpoint was
        not kept (:func:`specfair.study.arms.top_at_largest`, checked against its records:
        ``retrained.json``)."""
        return top_at_largest(self, name)

    def eval_records(self, top: TopLayers, seqs: list[Seq], teacher=None, lower=None,
                     exact: bool = True, **tags) -> list[dict]:
        """One record per sequence: ``tags``, its id, task, split group and the metrics of
        :func:`specfair.distill.topn.evaluate` (``teacher``/``lower``: as :meth:`signals`;
        ``exact=False``: without the full-vocabulary metrics from the target's head, the
        costliest part of an evaluation)."""
        res = evaluate(top, self.head, [self.signals(s, teacher, lower) for s in seqs],
                       self.bf16, self.target_head if exact else None)
        return [tags | {"id": s.id, "task": s.task, "group": self.groups.get(s.id)} | r
                for s, r in zip(seqs, res, strict=True)]


def _write_leakage(dropped: list[dict], text_leaks: list[dict], n_checked: int,
                   path: Path) -> None:
    """``leakage.json``: the train-split prompts the prompt check dropped, counted per task,
    and the training sequences the text check dropped (their text as trained on equals or
    contains a test prompt, reference or target answer: ``text_leaks``, of ``n_checked``)."""
    counts: dict[str, int] = {}
    for d in dropped:
        counts[d["task"]] = counts.get(d["task"], 0) + 1
    text_counts: dict[str, int] = {}
    for d in text_leaks:
        text_counts[d["task"]] = text_counts.get(d["task"], 0) + 1
    write_text(path, json.dumps({"n_dropped": len(dropped), "per_task": counts,
                                "dropped": dropped,
                                "training_texts": {"n_checked": n_checked,
                                                   "n_dropped": len(text_leaks),
                                                   "per_task": text_counts,
                                                   "dropped": text_leaks}}, indent=2))
    _say(f"leak check: dropped {len(dropped)} train-split prompt(s) sharing a text with a test "
         f"prompt or reference" + (f" ({', '.join(f'{t} {n}' for t, n in counts.items())})"
                                   if counts else "")
         + f"; {len(text_leaks)} of {n_checked} training texts containing a test prompt or "
           "answer")


def _check_settings(cfg: StudyConfig, run_dir: Path) -> None:
    """A run directory holds one study: other settings are refused before anything runs,
    except settings of the training (``TRAINING_KEYS``) while nothing was trained yet (a
    study refused for its budgets, say, runs on with corrected ones), and settings that only
    add training (``ADDITIVE_KEYS``: more seeds with the same first one, a data dose) or only
    more timing (``ANY_TIME_KEYS``: ``n_bench``) at any time: what was trained and timed
    stays, and the summary and report read the records the settings name."""
    path = run_dir / "study_config.json"
    if path.is_file():
        old, new = read_json(path), cfg.to_dict()
        # a key newer than the run (added since): its default; ANY_TIME_KEYS: any value
        old = StudyConfig().to_dict() | old | {k: new[k] for k in ANY_TIME_KEYS}
        diff = sorted(k for k in new if old.get(k) != new[k] and not _adds_only(k, old, new))
        trained = any((run_dir / n).exists()
                      for n in ("eval.jsonl", "overfit.json", "arms", "methods"))
        if diff and (trained or not set(diff) <= set(TRAINING_KEYS)):
            raise SpecfairError(f"{run_dir} holds a study with other settings "
                                f"({', '.join(diff)}); use another --run-dir")


# Settings that only add to a finished run: more test prompts per task (``n_test``,
# ``n_test_per_task``: a larger count picks a superset, every drafter evaluated on the new ones
# from its checkpoint, or trained again where that is gone); more seeds after the first one (which
# trained the budget curve) and the arms they train, another data dose (in supervised tokens:
# other points below the same largest one, which the arms train on), more arms (every arm
# trained before kept: each arm's records are its own). A trained run takes other values of
# these.
ADDITIVE_KEYS = ("seeds", "seed_arms", "prompt_fractions", "dose_arm", "dose_tokens", "arms")


def _test_counts(d: dict) -> dict[str, int]:
    return {t: d["n_test_per_task"].get(t, d["n_test"]) for t in d["tasks"]}


def _adds_only(key: str, old: dict, new: dict) -> bool:
    if key in ("n_test", "n_test_per_task"):  # more test prompts: a superset (seeded ranks)
        have = _test_counts(old)
        return all(n >= have.get(t, n) for t, n in _test_counts(new).items())
    if key == "seeds":
        return bool(new[key]) and bool(old[key]) and new[key][0] == old[key][0]
    if key == "arms":
        return set(old[key]) <= set(new[key])
    if key == "dose_tokens":
        return bool(new[key]) and bool(old[key]) and max(new[key]) == max(old[key])
    return key in ADDITIVE_KEYS


def _measure_costs(target, drafter, seq: Seq, path: Path) -> None:
    if path.is_file():
        return
    c = measure_costs(target, drafter, seq.ids[: seq.n_prompt]) | {"cpu": cpu_name()}
    write_text(path, json.dumps(c, indent=2))
    _say(f"measured costs: c={c['c']:.3f}, v(k)=1+{c['verify_slope']:.3f}(k-1)")


# ---------------------------------------------------------------------------- stages


def stage_overfit(run: Run, path: Path) -> dict:
    """Train on one task's train sequences; greedy alpha on those same sequences and on the
    task's test sequences before and after: at the check's settings (``overfit_epochs``,
    ``overfit_lr``: a pipeline that cannot overfit cannot help) and at the study's own
    (``epochs``, ``lr``: what the arms do to that task, train beside test). The task is the
    test-worst task of the base drafter."""
    if path.is_file():
        return read_json(path)
    cfg = run.cfg
    base = [r for r in read_jsonl(run.dir / "eval.jsonl") if r["arm"] == "base"]
    by_task = {t: sum(r["alpha"] for r in base if r["task"] == t) for t in cfg.tasks}
    task = min(by_task, key=lambda t: by_task[t] / max(1, sum(r["task"] == t for r in base)))
    seqs = [s for s in run.train if s.task == task]
    tests = [s for s in run.test if s.task == task]
    mean = lambda rs, k: sum(r[k] for r in rs) / len(rs)  # noqa: E731
    top = run.fresh_top()
    before, before_test = run.eval_records(top, seqs), run.eval_records(top, tests)
    sig = [run.signals(s) for s in seqs]
    runs = []
    for epochs, lr in ((cfg.overfit_epochs, cfg.overfit_lr), (cfg.epochs, cfg.lr)):
        _say(f"overfit check on {task}: {len(seqs)} train sequences, {epochs} epochs, lr {lr}")
        top, state, secs = train_copy(
            run.drafter, run.head, sig, int(epochs * sum(len(s.ids) for s in seqs)),
            layers=cfg.top_layers, lr=lr, batch_size=cfg.batch_size, seed=cfg.seed,
            warmup=cfg.warmup_steps, kind=cfg.loss, bf16=run.bf16)
        after, after_test = run.eval_records(top, seqs), run.eval_records(top, tests)
        runs.append({"epochs": epochs, "lr": lr, "tokens": state.tokens,
                     "supervised_tokens": state.supervised,
                     "prompt_tokens": state.tokens - state.supervised, "seconds": secs,
                     "tokens_per_s": state.tokens / secs,
                     "greedy_before": mean(before, "greedy"), "greedy_after": mean(after, "greedy"),
                     "alpha_before": mean(before, "alpha"), "alpha_after": mean(after, "alpha"),
                     "test_greedy_before": mean(before_test, "greedy"),
                     "test_greedy_after": mean(after_test, "greedy"), "n_test": len(tests)})
        _say(f"overfit ({epochs} epochs, lr {lr}): greedy alpha on the train sequences "
             f"{runs[-1]['greedy_before']:.3f} -> {runs[-1]['greedy_after']:.3f}, on the test "
             f"sequences {runs[-1]['test_greedy_before']:.3f} -> "
             f"{runs[-1]['test_greedy_after']:.3f} ({state.tokens / secs:.0f} tokens/s)")
    res = {"task": task, "n_sequences": len(seqs)} | runs[0] | {"at_study_settings": runs[1]}
    write_text(path, json.dumps(res, indent=2))
    return res


# the files a run writes at its top level: none may be a directory (checked before any work)
RUN_FILES = ("study_config.json", "leakage.json", "test_responses.jsonl",
             "heldout_responses.jsonl", "train_target_text.jsonl", "train_drafter_text.jsonl",
             "costs.json", "overfit.json", "eval.jsonl", "policy_eval.jsonl", "methods.json",
             "routing.json", "same_data.json", "summary.json", "timed.json", "report.md",
             "report.html", "train_data.json", "monolingual.json")


def run_study(cfg: StudyConfig, run_dir: str | Path) -> Path:
    """Run (or resume) the study into ``run_dir``; returns the summary path."""
    checkpoint_seconds()  # SPECFAIR_CHECKPOINT_S, checked before anything is written
    run_dir = check_out_dir(run_dir, "--run-dir")
    check_out_files(run_dir, RUN_FILES, "--run-dir")
    _check_settings(cfg, run_dir)
    with dir_lock(run_dir, "specfair experiment"):
        return _run_study(cfg, run_dir)


def _chosen(cfg: StudyConfig, run_dir: Path) -> Method | None:
    """The method a finished comparison chose for the arms (``methods.json``), if any."""
    res = read_methods(run_dir)
    if res is None or not res["select"] or res["chosen"] == res["configured"]:
        return None
    m = next(r for r in res["methods"] if r["name"] == res["chosen"])
    return Method(m["top_layers"], m["lr"], m["train_text"])


def _run_study(cfg: StudyConfig, run_dir: Path) -> Path:
    t0 = time.perf_counter()
    run = Run(cfg, run_dir, _chosen(cfg, run_dir))
    if read_methods(run_dir) is None and (m := stage_methods(run)) is not None:
        del run  # the arms train with the chosen method: its signals and training text
        gc.collect()
        run = Run(cfg, run_dir, m)
    run.release_target()
    out = run_dir / "eval.jsonl"
    stage_base(run, out)
    stage_overfit(run, run_dir / "overfit.json")
    for arm in cfg.arms:
        stage_arm(run, arm, out)
    router = stage_routing(run)  # the task router against oracle routing (study.routing)
    stage_index(run)  # the index arm beside fine-tuning (study.index_arm): same_data.json
    write_summary(run_dir, run.cfg)
    exports = export_arms(run, router)
    run.release_models()  # the timed stage (specfair.study.timed) loads the models it times
    run_timed(run, exports)
    gc.collect()
    write_report(run_dir)  # a first report.md, report.html (specfair.report.study)
    _say("first report written (first seed); next: the other seeds and the data dose")
    # the dose arm first, complete (its seeds, then the dose), then the other arms' seeds; the
    # summary and report after each, so a run stopped early reports all it measured
    if cfg.seeds[1:] or cfg.dose_points:
        run.load_models()
    for i, arm in enumerate(sorted(cfg.arms, key=lambda a: a != cfg.dose_arm)):
        for seed in cfg.seeds[1:] if arm in cfg.arms_seeded else []:
            stage_arm(run, arm, out, seed)
        if i == 0:  # the summary and report after each point, too
            stage_dose(run, out, lambda: (write_summary(run_dir, run.cfg),
                                          write_report(run_dir)))
        stage_index(run)  # the dose's fine-tuned points beside their indexes
        path = write_summary(run_dir, run.cfg)
        write_report(run_dir)
    _say(f"done in {time.perf_counter() - t0:.0f} s: {path}")
    return path
