"""The distillation loop (accelerate: the same code on CPU, one GPU, or DDP under
``accelerate launch`` / ``torchrun``).

Per optimizer step: ``grad_accum`` micro-batches; each process draws the same *global* batch of
``batch_size * num_processes`` example indices from the :class:`TaskSampler` and trains on its
slice; DDP averages the gradients. Only the drafter is trained; the target runs in inference mode
and we keep its **final hidden states at the response positions** (not logits: 1536 floats instead
of 151,936 per position) in the shared in-memory store of target states
(:func:`specfair.measure.signals.target_hidden`), so each training example costs one target
forward per target, whatever the number of runs (on-policy samples are scored afresh). The
vocabulary-sized loss is then computed chunk by chunk from the two output heads (see
``losses.distill_loss_from_hidden``).
Per-task adapters: each micro-batch is drawn from one task and trains that task's adapter; with
``grad_accum > 1`` one step may train several adapters, each on its own micro-batches, while
the adapters of tasks not drawn keep no gradient (so AdamW does not move them).

Every ``reestimate_every`` steps (and at the start and the end) the per-task acceptance alpha is
measured teacher-forced on the held-back examples (for ``disparity`` it drives the sampler) and
logged. Checkpoints (trainable parameters, optimizer, scheduler, sampler and RNG states, step; no
pickle, see :mod:`specfair.distill.checkpoint`) go to ``<out>/checkpoints/step-XXXXXX`` every
``checkpoint_every`` steps; ``resume=True`` continues from the latest one and reproduces the
uninterrupted run. Metrics: ``<out>/train_log.jsonl``, one record per logged step:
``{"step", "loss", "lr", "tokens", "tokens_per_s", "step_s", "tasks", "weights": {task: w}}``
plus ``"alpha": {task: a}``, ``"greedy_alpha"`` when re-estimated.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from specfair.atomic import open_append, write_text
from specfair.decoding import autoregressive_generate
from specfair.distill.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from specfair.distill.config import DistillConfig
from specfair.distill.data import Example
from specfair.distill.guard import check_step, check_weights
from specfair.distill.run_setup import (
    TrainResult,
    grouped_adamw,
    lr_scheduler,
    make_accelerator,
    progress_bar,
    write_config,
)
from specfair.distill.student import (
    StudentLoss,
    TeacherCache,
    base_lm,
    collate,
    estimate_alphas,
    prepare_student,
)
from specfair.distill.weighting import TaskSampler
from specfair.drafters.router import TaskRoutedDrafter, adapter_name
from specfair.errors import SpecfairError
from specfair.measure.io import read_jsonl
from specfair.models.eos import eos_ids

# ---------------------------------------------------------------------------- training


def train(
    cfg: DistillConfig,
    target,
    drafter,
    tokenizer,
    train_examples: Sequence[Example],
    heldout_examples: Sequence[Example],
    out_dir: str | Path,
    *,
    resume: bool = False,
    accelerator=None,
    stop_after: int | None = None,
) -> TrainResult:
    """Distil ``target`` into (a copy of) ``drafter`` and return the trained student.

    ``drafter`` is modified in place for LoRA (adapters injected) and full fine-tuning; pass a
    fresh model. ``stop_after`` ends the loop after that step (a simulated interruption; the
    checkpoint at that step, if due, is written first). The target's hidden states are
    remembered per target (:func:`specfair.measure.signals.target_states`), so runs on the same
    target and examples share them.
    """
    if not train_examples:
        raise SpecfairError("distill: no training examples")
    out_dir = Path(out_dir)
    acc = accelerator or make_accelerator(cfg)
    write_config(cfg, out_dir, acc, resume)
    run = _Run.build(cfg, acc, target, drafter, tokenizer, train_examples, heldout_examples,
                     out_dir)
    step, alpha_before, resumed = run.restore(resume)
    run.start_log(step, resumed)
    if step == 0:
        alpha_before = run.reestimate(0)

    progress = progress_bar(cfg, acc, step)
    last_loss = float("nan")
    try:
        while step < cfg.steps:
            rec = run.train_step(step)
            step += 1
            last_loss = rec["loss"]
            if step % cfg.log_every == 0 or step == cfg.steps:
                run.log({"step": step, **rec})
            if progress is not None:
                progress.update(progress.task_ids[0], advance=1, loss=rec["loss"],
                                tps=rec["tokens_per_s"])
            if step % cfg.reestimate_every == 0 and step < cfg.steps:
                run.reestimate(step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                save_checkpoint(out_dir, step, acc, run.student, run.trainable_names,
                                run.optimizer, run.scheduler, run.sampler, alpha_before,
                                cfg.keep_checkpoints)
            if stop_after is not None and step >= stop_after:
                break
    finally:
        if progress is not None:
            progress.stop()

    alpha_after = run.reestimate(step) if step >= cfg.steps else {}
    if acc.is_main_process and step >= cfg.steps:
        write_text(out_dir / "distill_summary.json", json.dumps({
            "steps": step, "final_loss": last_loss, "alpha_before": alpha_before,
            "alpha_after": alpha_after, "tasks": run.tasks,
        }, indent=2))
    acc.wait_for_everyone()
    router = TaskRoutedDrafter(run.student, run.tasks) if run.per_task else None
    run.student.eval()
    return TrainResult(run.student, step, out_dir, alpha_before, alpha_after, router)


@dataclass
class _Run:
    """What one training run holds, and its steps: one optimizer step, one alpha estimate."""

    cfg: DistillConfig
    acc: object
    student: nn.Module
    wrapped: nn.Module  # the student and its loss, prepared by accelerate
    optimizer: torch.optim.Optimizer
    scheduler: object
    sampler: TaskSampler
    teacher: TeacherCache
    trainable: list  # (name, parameter) of the trainable parameters
    task_of_param: dict  # per-task: trainable parameter name -> its adapter's task (or None)
    tasks: list[str]
    train_examples: Sequence[Example]
    heldout_examples: Sequence[Example]
    pad_id: int
    eos: list[int]  # the target's end-of-sequence ids (on-policy samples stop there)
    log_path: Path

    @classmethod
    def build(cls, cfg, acc, target, drafter, tokenizer, train_examples, heldout_examples,
              out_dir) -> _Run:
        device = acc.device
        tasks = sorted({e.task for e in train_examples})
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        target.eval().to(device)
        for p in target.parameters():
            p.requires_grad_(False)
        student = prepare_student(drafter, cfg, tasks).to(device)
        student.train()
        trainable = [(n, p) for n, p in student.named_parameters() if p.requires_grad]
        task_of_param = {}
        if cfg.weighting == "per-task":
            task_of_param = {n: next((t for t in tasks if f".{adapter_name(t)}." in n), None)
                             for n, _ in trainable}
        optimizer = grouped_adamw(trainable, cfg)
        scheduler = lr_scheduler(optimizer, cfg)
        wrapped, optimizer = acc.prepare(StudentLoss(student, cfg), optimizer)
        sampler = TaskSampler(
            [e.task for e in train_examples], cfg.weighting, seed=cfg.seed,
            temperature=cfg.disparity_temperature, floor=cfg.disparity_floor, tasks=tasks,
        )
        teacher = TeacherCache(target, cfg.max_seq_len)
        return cls(cfg, acc, student, wrapped, optimizer, scheduler, sampler, teacher, trainable,
                   task_of_param, tasks, train_examples, heldout_examples, pad_id,
                   eos_ids(target, tokenizer), out_dir / "train_log.jsonl")

    # ------------------------------------------------------------------ bookkeeping
    @property
    def per_task(self) -> bool:
        return self.cfg.weighting == "per-task"

    @property
    def trainable_names(self) -> list[str]:
        return [n for n, _ in self.trainable]

    def restore(self, resume: bool) -> tuple[int, dict, bool]:
        """``(step, alpha_before, resumed)`` from the latest checkpoint (``resume``), else 0."""
        ckpt = latest_checkpoint(self.log_path.parent) if resume else None
        step, alpha_before = 0, {}
        if ckpt is not None:
            step, alpha_before = load_checkpoint(
                ckpt, self.acc.process_index, self.student, self.trainable_names,
                self.optimizer, self.scheduler, self.sampler)
        self.acc.wait_for_everyone()
        return step, alpha_before, ckpt is not None

    def start_log(self, step: int, resumed: bool) -> None:
        """A fresh run starts a new log; a resumed one keeps what its checkpoint covers
        (records logged after it, before a crash, are redone)."""
        if self.acc.is_main_process:
            kept = []
            if resumed and self.log_path.exists():
                kept = [r for r in read_jsonl(self.log_path, repair=True)
                        if r.get("step", 0) <= step]
            write_text(self.log_path, "".join(json.dumps(r) + "\n" for r in kept))
        if (self.cfg.weighting == "disparity" and not self.heldout_examples
                and self.acc.is_main_process):
            warnings.warn("disparity weighting without held-back examples (heldout_per_task=0): "
                          "no alpha estimates, sampling stays balanced", stacklevel=3)

    def log(self, rec: dict) -> None:
        if self.acc.is_main_process:
            with open_append(self.log_path) as f:
                f.write(json.dumps(rec) + "\n")

    def activate(self, task: str | None):
        """Make ``task``'s adapter the active one (per-task); other labels: the base drafter."""
        if not self.per_task:
            return contextlib.nullcontext()
        if task in self.tasks:
            self.student.set_adapter(adapter_name(task))
            return contextlib.nullcontext()
        return self.student.disable_adapter()

    # ------------------------------------------------------------------ alpha
    def reestimate(self, at_step: int) -> dict:
        """Measure alpha on the held-back examples, feed it to the sampler and log it."""
        if not self.heldout_examples:
            return {}
        acc, cfg = self.acc, self.cfg
        world = acc.num_processes
        reduce = ((lambda t: acc.reduce(t.to(acc.device), reduction="sum").cpu())
                  if world > 1 else None)
        est = estimate_alphas(
            self.student, self.teacher, self.heldout_examples, batch_size=cfg.batch_size,
            max_seq_len=cfg.max_seq_len, pad_id=self.pad_id, device=acc.device,
            router=self.activate if self.per_task else None, rank=acc.process_index,
            world_size=world, reduce=reduce, chunk=cfg.loss_chunk,
        )
        if est:
            key = "alpha" if cfg.alpha_metric == "alpha" else "greedy"
            self.sampler.update({t: v[key] for t, v in est.items()})
            self.log({"step": at_step, "event": "estimate",
                      "alpha": {t: v["alpha"] for t, v in est.items()},
                      "greedy_alpha": {t: v["greedy"] for t, v in est.items()},
                      "weights": self.sampler.weights()})
        return est

    # ------------------------------------------------------------------ one step
    def train_step(self, step: int) -> dict:
        """Optimizer step ``step + 1``: ``grad_accum`` micro-batches, then one update; returns
        the log record (without ``"step"``)."""
        cfg, acc = self.cfg, self.acc
        t0 = time.perf_counter()
        weights = self.sampler.weights()
        loss_sum, tokens, drawn, step_tasks = 0.0, 0, set(), []
        for micro in range(cfg.grad_accum):
            idx = self.sampler.sample(cfg.batch_size * acc.num_processes)
            step_tasks += [self.train_examples[i].task for i in idx]
            loss, n_tokens, task = self._micro_batch(idx, step, micro)
            loss_sum += loss
            tokens += n_tokens
            drawn.add(task)
        loss_val = loss_sum / cfg.grad_accum
        if acc.num_processes > 1:  # before the update: every rank sees the same numbers
            lt = acc.reduce(torch.tensor([loss_val, tokens], dtype=torch.float64,
                                         device=acc.device), reduction="sum").cpu()
            loss_val, tokens = float(lt[0]) / acc.num_processes, int(lt[1])
        self._optimizer_step(drawn, step + 1, loss_val)
        dt = time.perf_counter() - t0
        return {"loss": loss_val, "lr": self.scheduler.get_last_lr()[0], "tokens": tokens,
                "tokens_per_s": tokens / max(dt, 1e-9), "step_s": dt,
                "tasks": sorted(set(step_tasks)), "weights": weights}

    def _micro_batch(self, idx: list[int], step: int, micro: int) -> tuple[float, int, str]:
        """Forward and backward on this process's slice of the global batch ``idx``; returns
        ``(loss, tokens, task of its first example)``."""
        cfg, acc = self.cfg, self.acc
        rank = acc.process_index
        exs = [self.train_examples[i]
               for i in idx[rank * cfg.batch_size : (rank + 1) * cfg.batch_size]]
        task = exs[0].task
        self.activate(task)
        if cfg.on_policy_frac > 0:
            exs = _on_policy(exs, self.student, cfg, step, micro, rank, self.eos)
        batch = collate(exs, cfg.max_seq_len, self.pad_id, acc.device)
        t_h = None if cfg.loss == "ce" else self.teacher.hidden(exs, acc.device)
        n_loss = max(int(batch.labels.numel()), 1)
        sync = (acc.no_sync(self.wrapped) if micro < cfg.grad_accum - 1
                else contextlib.nullcontext())
        with sync, acc.autocast():
            loss_sum = self.wrapped(batch.input_ids, batch.attention_mask, batch.rows,
                                    batch.cols, batch.labels, t_h,
                                    None if t_h is None else self.teacher.head)
            loss = loss_sum / n_loss / cfg.grad_accum
            acc.backward(loss)
        return float(loss.detach()) * cfg.grad_accum, batch.n_tokens, task

    def _optimizer_step(self, drawn: set[str], step: int, loss: float) -> None:
        """Clip and step. Per-task: the adapters of tasks not drawn in this step keep no
        gradient, so they do not move (AdamW momentum); every drawn adapter keeps its own.
        A non-finite loss, gradient norm or updated weight stops the run
        (:mod:`specfair.distill.guard`) before the step's checkpoint is written."""
        if self.per_task:
            for n, p in self.student.named_parameters():
                if n in self.task_of_param and self.task_of_param[n] not in drawn:
                    p.grad = None
        norm = self.acc.clip_grad_norm_(
            [p for _, p in self.trainable if p.grad is not None],
            self.cfg.max_grad_norm if self.cfg.max_grad_norm > 0 else math.inf)
        lr = self.scheduler.get_last_lr()[0]
        kept = latest_checkpoint(self.log_path.parent)
        check_step(step, loss, None if norm is None else float(norm), lr, kept)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        check_weights(step, self.trainable, lr, kept)


def _on_policy(exs, student, cfg, step, micro, rank, eos) -> list[Example]:
    """DistillSpec's on-policy data: a share ``on_policy_frac`` of the examples get a response
    sampled from the drafter (the engine's plain decoding, with this step's own generator)."""
    g = torch.Generator().manual_seed(
        (cfg.seed * 1_000_003 + step * 1009 + micro * 31 + rank) % (2**63))
    out = []
    was = student.training
    student.eval()
    for e in exs:
        if float(torch.rand((), generator=g)) < cfg.on_policy_frac:
            n = max(1, min(len(e.response_ids), cfg.response_max_new_tokens))
            # temperature 0 still samples (at 1e-6), as on-policy data always has
            resp = autoregressive_generate(
                base_lm(student), e.prompt_ids, max_new_tokens=n, eos_token_id=eos,
                temperature=max(cfg.on_policy_temperature, 1e-6), generator=g).tokens
            e = Example(f"{e.id}@op{step}.{micro}", e.task, e.prompt_ids, tuple(resp),
                        "onpolicy", e.base_id)
        out.append(e)
    if was:
        student.train()
    return out
