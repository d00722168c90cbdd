"""``DistillConfig``: every knob of drafter distillation, with CPU-sized defaults (the one place
for them; files are checked against these typed fields by :mod:`specfair.schema`).

Target responses (``data_source="target"``) are generated once and cached in
``responses.jsonl`` (resumable, :mod:`specfair.measure.responses`); pass ``responses_path`` to
reuse an existing cache or use ``data_source="reference"`` to skip generation. Measured costs of
training and generation: docs/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specfair.defaults import DEFAULT_GAMMA
from specfair.distill.cheap import parse_layer_spec
from specfair.errors import SpecfairError
from specfair.schema import check_keys, check_table

WEIGHTINGS = ("uniform", "balanced", "disparity", "per-task")
LOSSES = ("fkl", "rkl", "tvd", "jsd", "ce")
METHODS = ("lora", "full", "topn")
SCHEDULES = ("cosine", "linear", "constant")
DATA_SOURCES = ("target", "reference", "both")
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass
class DistillConfig:
    # --- what to optimise
    weighting: str = "disparity"  # uniform | balanced | disparity | per-task
    loss: str = "fkl"  # fkl | rkl | tvd | jsd | ce
    jsd_beta: float = 0.5
    temperature: float = 1.0  # both distributions are softened by it (no T^2 rescaling)
    # --- which parameters
    method: str = "lora"  # lora | full | topn (top layers on cached signals; per-task: lora/topn)
    top_layers: int = 4  # topn: the drafter's top layers that train (the rest stays frozen)
    topk: int = 32  # topn: the target's top-k log-probs cached per position (the teacher)
    lora_rank: int = 16
    lora_alpha: float = 32.0
    lora_dropout: float = 0.0
    lora_targets: tuple[str, ...] = DEFAULT_LORA_TARGETS
    cheap_layers: str | None = None  # None | "first:K" | "every:N" | "0,1,5,..." (layer indices)
    # --- optimisation
    lr: float | None = None  # None: 3e-4 for LoRA, 2e-5 for full fine-tuning
    weight_decay: float = 0.0
    steps: int = 40
    batch_size: int = 4  # sequences per process per micro-step
    grad_accum: int = 1
    max_seq_len: int = 384
    warmup_steps: int = 3
    schedule: str = "cosine"
    max_grad_norm: float = 1.0
    bf16: bool = False  # bf16 autocast (where the accelerator supports it)
    loss_chunk: int = 64  # positions per chunk of the vocabulary-sized loss computation
    # --- task weighting
    reestimate_every: int = 10  # steps between alpha re-estimations (disparity; also logged)
    disparity_temperature: float = 0.05
    disparity_floor: float = 0.2  # share of probability mass spread uniformly over tasks
    alpha_metric: str = "alpha"  # alpha (sum min(p,q)) | greedy (argmax match)
    heldout_per_task: int = 2  # TRAIN-split prompts per task held back to estimate alpha
    # --- data
    data_source: str = "target"  # target | reference | both
    responses_path: str | None = None  # an existing responses.jsonl to reuse (train ids only)
    response_max_new_tokens: int = 64
    response_temperature: float = 0.0  # 0 = greedy target responses
    response_gamma: int = DEFAULT_GAMMA
    max_prompts_per_task: int | None = None
    # per-task caps that override max_prompts_per_task, e.g. an unbalanced mix such as a
    # deployment's traffic, where `uniform` and `balanced` weighting then differ
    prompts_per_task: dict[str, int] = field(default_factory=dict)
    on_policy_frac: float = 0.0  # share of examples replaced by drafter samples (DistillSpec)
    on_policy_temperature: float = 1.0
    # --- bookkeeping
    checkpoint_every: int = 20
    keep_checkpoints: int = 2
    log_every: int = 1
    seed: int = 0
    export_dtype: str = "auto"  # auto (training dtype) | float32 | bfloat16 | float16
    merge_per_task: bool = False  # per-task export: merged full models instead of adapters
    progress: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.lora_targets, list | str):
            t = self.lora_targets
            self.lora_targets = tuple(t.split(",")) if isinstance(t, str) else tuple(t)
        self.validate()

    # ------------------------------------------------------------------ helpers
    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return float(self.lr)
        return 3e-4 if self.method == "lora" else 2e-5  # topn: 1e-4 lowered alpha (RESULTS)

    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise SpecfairError(f"distill config: {msg}")

        for name, allowed in [
            ("weighting", WEIGHTINGS),
            ("loss", LOSSES),
            ("method", METHODS),
            ("schedule", SCHEDULES),
            ("data_source", DATA_SOURCES),
            ("alpha_metric", ("alpha", "greedy")),
        ]:
            if getattr(self, name) not in allowed:
                bad(f"{name}={getattr(self, name)!r} (choose from {', '.join(allowed)})")
        if self.weighting == "per-task" and self.method == "full":
            bad("weighting='per-task' trains one adapter or top-layer copy per task: use "
                "method='lora' or 'topn'")
        if self.method == "topn" and (self.loss not in ("fkl", "tvd", "jsd")
                                      or self.cheap_layers or self.on_policy_frac):
            bad("method='topn' trains on the cached top-k: loss fkl, tvd or jsd, no "
                "cheap_layers, no on_policy_frac")
        if not 0.0 < self.jsd_beta < 1.0:
            bad("jsd_beta must be in (0, 1)")
        if self.temperature <= 0:
            bad("temperature must be > 0")
        for name in ("steps", "batch_size", "grad_accum", "max_seq_len", "lora_rank", "top_layers",
                     "topk",
                     "reestimate_every", "checkpoint_every", "keep_checkpoints", "loss_chunk",
                     "log_every", "response_max_new_tokens", "response_gamma"):
            if int(getattr(self, name)) < 1:
                bad(f"{name} must be >= 1")
        if self.warmup_steps < 0 or self.heldout_per_task < 0:
            bad("warmup_steps and heldout_per_task must be >= 0")
        if not 0.0 <= self.disparity_floor <= 1.0:
            bad("disparity_floor must be in [0, 1]")
        if self.disparity_temperature <= 0:
            bad("disparity_temperature must be > 0")
        if not 0.0 <= self.on_policy_frac <= 1.0:
            bad("on_policy_frac must be in [0, 1]")
        if self.export_dtype not in ("auto", "float32", "bfloat16", "float16"):
            bad(f"export_dtype={self.export_dtype!r}")
        if not isinstance(self.prompts_per_task, dict) or any(
            not isinstance(v, int) or isinstance(v, bool) or v < 0
            for v in self.prompts_per_task.values()
        ):
            bad("prompts_per_task must map task names to integers >= 0")
        if self.cheap_layers is not None:
            parse_layer_spec(self.cheap_layers, 10**6)  # syntax check only

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lora_targets"] = list(self.lora_targets)
        return d

    @classmethod
    def field_types(cls) -> dict[str, Any]:
        """The type of every field as accepted from a file (``lora_targets`` may also be a
        comma-separated string)."""
        hints = typing.get_type_hints(cls)
        hints["lora_targets"] = str | list[str] | tuple[str, ...]
        return {f.name: hints[f.name] for f in dataclasses.fields(cls)}

    @classmethod
    def from_dict(cls, d: dict[str, Any], origin: str = "distill config",
                  section: str = "distill") -> DistillConfig:
        """Build from a table, refusing unknown keys (with the closest valid name) and values
        of the wrong type; the error names ``origin`` and ``section``."""
        check_table(origin, section, d, cls.field_types())
        return cls(**d)

    def check_tasks(self, tasks: list[str], origin: str = "distill config") -> None:
        """Refuse ``prompts_per_task`` keys that are not tasks of the suite."""
        check_keys(origin, "distill.prompts_per_task", self.prompts_per_task, tasks, "task")

    @classmethod
    def load(cls, path: str | Path, **overrides: Any) -> DistillConfig:
        """Read a TOML (optionally under a ``[distill]`` table) or JSON file; ``overrides``
        whose value is not None win."""
        path = Path(path)
        if not path.is_file():
            raise SpecfairError(f"distill config file not found: {path}")
        try:
            if path.suffix == ".json":
                d = json.loads(path.read_text(encoding="utf-8"))
            else:
                d = tomllib.loads(path.read_text(encoding="utf-8"))
        except (ValueError, tomllib.TOMLDecodeError) as e:
            raise SpecfairError(f"cannot parse {path}: {e}") from e
        section = "distill" if isinstance(d.get("distill"), dict) else ""
        d = d.get("distill", d)
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d, str(path), section)

    def with_overrides(self, **overrides: Any) -> DistillConfig:
        d = self.to_dict()
        d.update({k: v for k, v in overrides.items() if v is not None})
        return DistillConfig.from_dict(d)

    # fields that must not change between a run and its --resume
    RESUME_KEYS = ("weighting", "loss", "method", "lora_rank", "lora_targets", "cheap_layers",
                   "batch_size", "grad_accum", "seed", "steps", "schedule")
