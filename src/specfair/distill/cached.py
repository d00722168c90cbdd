"""Distillation on cached target signals (``method = "topn"``): the CPU path.

The target runs once per training sequence (its top-k log-probs, stored with the drafter's
frozen lower-layer hidden states in a :class:`~specfair.measure.signals.SignalStore`), then a
trainable copy of the drafter's top ``top_layers`` layers (:mod:`specfair.distill.topn`) trains
on them: neither the target nor the drafter's lower body is in the loop (the study measured
4-7x the tokens/s of LoRA on all layers, docs/RESULTS.md).

Records, as :func:`specfair.distill.trainer.train` writes them: ``train_log.jsonl`` (per step:
step, loss, lr, tokens, tokens_per_s, tasks, weights; ``event: estimate`` records with the
held-back alpha and greedy alpha per task) and ``distill_summary.json``. ``steps`` optimizer
steps of ``batch_size`` sequences; ``per-task`` trains one copy per task, the steps split evenly
(equal token budget). A stage is short (minutes): it restarts rather than resumes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

from specfair.atomic import write_text
from specfair.distill.config import DistillConfig
from specfair.distill.data import Example
from specfair.distill.run_setup import TrainResult
from specfair.distill.student import truncate
from specfair.distill.topn import (
    Signals,
    TopLayers,
    TrainState,
    evaluate,
    make_optimizer,
    train_sampled,
)
from specfair.distill.weighting import TaskSampler
from specfair.drafters.router import TaskRoutedDrafter, copy_top
from specfair.measure.io import append_jsonl
from specfair.measure.signals import fill_signals, seq_key


def _seq(cfg: DistillConfig, e: Example) -> tuple[str, tuple] | None:
    """``(key, (ids, n_prompt))`` of an example cut to ``max_seq_len`` (None: no response)."""
    prompt, resp = truncate(e, cfg.max_seq_len)
    if not resp:
        return None
    ids = tuple(prompt + resp)
    return seq_key(ids, len(prompt)), (ids, len(prompt))


def with_top(drafter, top: TopLayers):
    """A copy of ``drafter`` whose top layers are ``top``'s; every other module (embeddings,
    lower layers, head) is shared with ``drafter``, so a copy per task costs only its layers."""
    model = copy_top(drafter, top.n)
    top.install(model)
    return model.eval()


def _estimate_record(step: int, est: dict, weights: dict) -> dict:
    return {"step": step, "event": "estimate", "alpha": {t: v["alpha"] for t, v in est.items()},
            "greedy_alpha": {t: v["greedy"] for t, v in est.items()}, "weights": weights}


class _Trainer:
    """The signals of the examples, and one training run of a copy of the top layers."""

    def __init__(self, cfg: DistillConfig, target, drafter, train_ex, held_ex,
                 names: tuple[str, str], store_root: Path, bf16: bool) -> None:
        self.cfg, self.drafter, self.bf16 = cfg, drafter, bf16
        layer = drafter.config.num_hidden_layers - cfg.top_layers
        train = [(e.task, x) for e in train_ex if (x := _seq(cfg, e)) is not None]
        held = [(e.task, x) for e in held_ex if (x := _seq(cfg, e)) is not None]
        self.teacher, self.lower = fill_signals(
            target, drafter, [x for _, x in train + held], store_root, target_name=names[0],
            drafter_name=names[1], topk=cfg.topk, layer=layer)
        self.head = drafter.get_output_embeddings().weight.detach()
        self.train = [(t, self._signals(x)) for t, x in train]
        self.held = [(t, self._signals(x)) for t, x in held]

    def _signals(self, seq: tuple[str, tuple]) -> Signals:
        key, (_, n_prompt) = seq
        t, h = self.teacher.get(key), self.lower.get(key)
        return Signals(h["hidden"], t["topk_idx"], t["topk_logp"], n_prompt)

    def alphas(self, top: TopLayers, tasks: Sequence[str]) -> dict[str, dict[str, float]]:
        """Held-back alpha and greedy alpha per task: the mean over sequences of the mean over
        response positions (as :func:`specfair.distill.trainer.estimate_alphas`)."""
        held = [(t, s) for t, s in self.held if t in tasks]
        res = evaluate(top, self.head, [s for _, s in held], self.bf16)
        out = {}
        for task in tasks:
            rs = [r for (t, _), r in zip(held, res, strict=True) if t == task]
            if rs:
                out[task] = {k: sum(r[k] for r in rs) / len(rs) for k in ("alpha", "greedy")}
        return out

    def run(self, tasks: Sequence[str], steps: int, rule: str, log,
            log_estimates: bool = True) -> tuple[TopLayers, dict, dict]:
        """Train a fresh copy for ``steps`` steps on the examples of ``tasks``; returns it and
        the held-back alphas before and after."""
        cfg = self.cfg
        pool = [(t, s) for t, s in self.train if t in tasks]
        sampler = TaskSampler([t for t, _ in pool], rule, seed=cfg.seed,
                              temperature=cfg.disparity_temperature, floor=cfg.disparity_floor)
        top = TopLayers(self.drafter, cfg.top_layers)
        opt = make_optimizer(top, cfg.learning_rate)
        key = "alpha" if cfg.alpha_metric == "alpha" else "greedy"
        estimates: dict[int, dict] = {}

        def estimate(step: int) -> None:
            est = estimates[step] = self.alphas(top, tasks)
            if est:
                sampler.update({t: v[key] for t, v in est.items()})
                if log_estimates:
                    log(_estimate_record(step, est, sampler.weights()))

        train_sampled(top, self.head, opt, TrainState(), [s for _, s in pool], sampler,
                      math.inf, batch_size=cfg.batch_size, lr=cfg.learning_rate,
                      warmup=cfg.warmup_steps, kind=cfg.loss, bf16=self.bf16, hook=estimate,
                      every=cfg.reestimate_every, log=log, max_grad_norm=cfg.max_grad_norm,
                      max_steps=steps)
        if steps not in estimates:
            estimate(steps)
        return top, estimates[0], estimates[steps]


def train_cached(cfg: DistillConfig, target, drafter, train_ex: Sequence[Example],
                 held_ex: Sequence[Example], out_dir: str | Path, *, names: tuple[str, str],
                 store_root: str | Path, bf16: bool) -> TrainResult:
    """Train ``drafter``'s top layers on cached signals (stored under ``store_root``, shared by
    every variant of an experiment); ``names`` are the target's and drafter's names (the
    stores' keys). Returns the trained drafter (a copy; ``drafter`` is unchanged), or for
    ``per-task`` a :class:`TaskRoutedDrafter` of per-task copies."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train_log.jsonl"
    log_path.unlink(missing_ok=True)  # a stage restarts, it does not resume
    write_text(out_dir / "distill_config.json", json.dumps(cfg.to_dict(), indent=2))
    tr = _Trainer(cfg, target, drafter, train_ex, held_ex, names, Path(store_root), bf16)
    tasks = sorted({e.task for e in train_ex})
    if cfg.weighting == "per-task":
        even = {t: 1 / len(tasks) for t in tasks}
        append_jsonl(log_path, _estimate_record(
            0, before := tr.alphas(TopLayers(drafter, cfg.top_layers), tasks), even))
        models, after = {}, {}
        for task in tasks:
            top, _, a = tr.run([task], max(1, cfg.steps // len(tasks)), "uniform",
                               lambda r, t=task: append_jsonl(log_path, r | {"task": t}),
                               log_estimates=False)
            models[task] = with_top(drafter, top)
            after |= a
        append_jsonl(log_path, _estimate_record(cfg.steps, after, even))
        student = TaskRoutedDrafter(None, base=drafter, models=models)
    else:
        top, before, after = tr.run(tasks, cfg.steps, cfg.weighting,
                                    lambda r: append_jsonl(log_path, r))
        student = with_top(drafter, top)
    write_text(out_dir / "distill_summary.json", json.dumps({
        "steps": cfg.steps, "alpha_before": before, "alpha_after": after, "tasks": tasks,
        "method": "topn"}, indent=2))
    return TrainResult(student, cfg.steps, out_dir, before, after,
                       student if cfg.weighting == "per-task" else None)
