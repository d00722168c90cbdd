"""What a training run is set up with: the accelerator (CPU, one GPU or DDP), the optimizer and
its schedule, the run's config file, the progress bar, and what a run returns."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from specfair.atomic import write_text
from specfair.distill.config import DistillConfig
from specfair.errors import SpecfairError
from specfair.measure.io import read_json


@dataclass
class TrainResult:
    student: object  # the trained drafter (peft model for LoRA)
    steps: int
    out_dir: Path
    alpha_before: dict = field(default_factory=dict)
    alpha_after: dict = field(default_factory=dict)
    router: object | None = None  # TaskRoutedDrafter for per-task

    @property
    def log_path(self) -> Path:
        return self.out_dir / "train_log.jsonl"


def make_accelerator(cfg: DistillConfig, cpu: bool | None = None):
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    handlers = []
    if cfg.weighting == "per-task":
        handlers.append(DistributedDataParallelKwargs(find_unused_parameters=True))
    kw = {"mixed_precision": "bf16" if cfg.bf16 else "no", "kwargs_handlers": handlers}
    if cpu is not None:
        kw["cpu"] = cpu
    try:
        return Accelerator(**kw)
    except ValueError:
        # accelerate keeps one process-wide state; a second run in the same (single) process
        # with another mixed-precision setting must reset it (never done under DDP).
        from accelerate.state import AcceleratorState

        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            raise
        AcceleratorState._reset_state()
        return Accelerator(**kw)


def lr_scheduler(optimizer, cfg: DistillConfig):
    from transformers import get_scheduler

    name = {"cosine": "cosine", "linear": "linear", "constant": "constant_with_warmup"}
    return get_scheduler(name[cfg.schedule], optimizer, num_warmup_steps=cfg.warmup_steps,
                         num_training_steps=cfg.steps)


def write_config(cfg: DistillConfig, out_dir: Path, acc, resume: bool) -> None:
    """``distill_config.json``; a resumed run must not change any of ``RESUME_KEYS``."""
    if acc.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        cfg_path = out_dir / "distill_config.json"
        if resume and cfg_path.is_file():
            old = read_json(cfg_path)
            if not isinstance(old, dict):
                raise SpecfairError(f"{cfg_path}: not a JSON object")
            changed = [k for k in DistillConfig.RESUME_KEYS
                       if json.dumps(old.get(k)) != json.dumps(cfg.to_dict().get(k))]
            if changed:
                raise SpecfairError(f"--resume with a changed config: {', '.join(changed)}")
        write_text(cfg_path, json.dumps(cfg.to_dict(), indent=2))
    acc.wait_for_everyone()


def grouped_adamw(trainable, cfg: DistillConfig):
    decay = [p for _, p in trainable if p.ndim >= 2]
    no_decay = [p for _, p in trainable if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.learning_rate,
    )


def progress_bar(cfg: DistillConfig, acc, start: int):
    if start >= cfg.steps and acc.is_main_process:  # a resumed run that had finished
        print(f"distill: already trained ({start} of {cfg.steps} steps), nothing to do")
        return None
    if not cfg.progress or not acc.is_main_process:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    p = Progress(
        TextColumn("distill"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[tps]:.0f} tok/s"),
        TimeElapsedColumn(),
    )
    p.add_task("steps", total=cfg.steps, completed=start, loss=math.nan, tps=0.0)
    p.start()
    return p
