"""``DistillConfig``: every knob of drafter distillation, with CPU-sized defaults (the one place
for them; files are checked against these typed fields by :mod:`specfair.schema`).

Target responses (``data_source="target"``) are generated once and cached in
``responses.jsonl`` (resumable, :mod:`specfair.measure.responses`); pass ``responses_path`` to
reuse an existing cache or use ``data_source="reference"`` to skip generation. Measured costs of
training and generation: docs/RESULTS.md.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from specfair.defaults import DEFAULT_GAMMA
from specfair.distill.cheap import parse_layer_spec
from specfair.errors import SpecfairError
from specfair.schema import (
    SEED_LIMIT,
    Rule,
    check_keys,
    check_table,
    loads_json,
    refusal,
    value_error,
)

WEIGHTINGS = ("uniform", "balanced", "disparity", "per-task")
LOSSES = ("fkl", "rkl", "tvd", "jsd", "ce")
METHODS = ("lora", "full", "topn")
SCHEDULES = ("cosine", "linear", "constant")
DATA_SOURCES = ("target", "reference", "both")
DEFAULT_LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
_POS, _COUNT, _NONNEG, _UNIT = Rule(gt=0), Rule(ge=1), Rule(ge=0), Rule(ge=0, le=1)
MAX_STEPS = 1_000_000  # optimizer steps: a bound on the work (token counts: the models' context)
# What each value must be beyond its type (checked by specfair.schema.check_table).
RULES = {
    "weighting": Rule(choices=WEIGHTINGS), "loss": Rule(choices=LOSSES),
    "jsd_beta": Rule(gt=0, lt=1), "temperature": _POS, "method": Rule(choices=METHODS),
    "top_layers": _COUNT, "topk": _COUNT, "lora_rank": _COUNT, "lora_alpha": _POS,
    "lora_dropout": Rule(ge=0, lt=1), "lora_targets": Rule(nonempty=True, unique=True),
    "lr": _POS, "weight_decay": _NONNEG, "steps": Rule(ge=1, le=MAX_STEPS), "batch_size": _COUNT,
    "grad_accum": _COUNT, "max_seq_len": _COUNT, "warmup_steps": _NONNEG,
    "schedule": Rule(choices=SCHEDULES), "max_grad_norm": _NONNEG, "loss_chunk": _COUNT,
    "reestimate_every": _COUNT, "disparity_temperature": _POS, "disparity_floor": _UNIT,
    "alpha_metric": Rule(choices=("alpha", "greedy")), "heldout_per_task": _NONNEG,
    "data_source": Rule(choices=DATA_SOURCES), "response_max_new_tokens": _COUNT,
    "response_temperature": _NONNEG, "response_gamma": _COUNT, "max_prompts_per_task": _NONNEG,
    "on_policy_frac": _UNIT, "on_policy_temperature": _POS, "checkpoint_every": _COUNT,
    "keep_checkpoints": _COUNT, "log_every": _COUNT, "seed": Rule(ge=0, lt=SEED_LIMIT),
    "export_dtype": Rule(choices=("auto", "float32", "bfloat16", "float16")),
}


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
    # where the settings came from, for error messages (set by from_dict)
    origin: typing.ClassVar[str] = "distill config"
    section: typing.ClassVar[str] = "distill"

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

    def validate(self, origin: str = "distill config", section: str = "distill") -> None:
        self._check(self.to_dict(), origin, section)

    @classmethod
    def _check(cls, d: dict[str, Any], origin: str, section: str) -> None:
        """Types and ranges (:data:`RULES`), then the settings that exclude each other."""
        check_table(origin, section, d, cls.field_types(), RULES)
        c = types.SimpleNamespace(**d)

        def bad(key: str, allowed: str) -> None:
            raise value_error(origin, section, key, d[key], allowed)

        if c.weighting == "per-task" and c.method == "full":
            bad("weighting", "uniform, balanced or disparity with method = 'full' (per-task "
                "trains one adapter or top-layer copy per task: method 'lora' or 'topn')")
        if c.method == "topn":
            if c.loss not in ("fkl", "tvd", "jsd"):
                bad("loss", "fkl, tvd or jsd with method = 'topn' (it trains on the cached top-k)")
            if c.cheap_layers or c.on_policy_frac:
                bad("cheap_layers" if c.cheap_layers else "on_policy_frac",
                    "unset with method = 'topn' (it trains on the cached top-k)")
        if any(v < 0 for v in c.prompts_per_task.values()):
            raise SpecfairError(f"{origin}: prompts_per_task = {c.prompts_per_task!r} in "
                                f"[{section}] must map task names to integers >= 0")
        if c.cheap_layers is not None:
            try:
                parse_layer_spec(c.cheap_layers, 10**6)  # syntax check only
            except SpecfairError as e:
                bad("cheap_layers", f"first:K, every:N or a list like '0,1,5' ({e})")

    @classmethod
    def check_flags(cls, flags: dict[str, Any]) -> None:
        """Command-line values (None: not given) against :data:`RULES`; the error names the
        option."""
        hints = cls.field_types()
        for key, value in flags.items():
            if value is not None and (allowed := refusal(value, hints[key], RULES.get(key))):
                raise SpecfairError(f"--{key.replace('_', '-')} {value!r}: must be {allowed}")

    def check_models(self, target, drafter, origin: str | None = None,
                     section: str | Callable[[str], str] | None = None,
                     flags: Iterable[str] = ()) -> None:
        """The limits that depend on the pair, from the models' configs (no weights read):
        ``top_layers`` and ``cheap_layers`` within the drafter's layers, ``topk`` within the
        target's vocabulary, ``lora_targets`` among the drafter's linear modules,
        ``max_seq_len`` and ``response_max_new_tokens`` within both contexts. ``section``
        may map a key to the table that set it; ``flags`` are keys set on the command line."""
        from specfair.models.load import context_length, model_shape

        origin = self.origin if origin is None else origin
        section = self.section if section is None else section
        d = model_shape(drafter)

        def bad(key: str, allowed: str) -> None:
            value = getattr(self, key)
            if key in flags:  # given on the command line
                raise SpecfairError(f"--{key.replace('_', '-')} {value!r}: must be {allowed}")
            raise value_error(origin, section(key) if callable(section) else section, key,
                              value, allowed)

        for spec in (target, drafter):
            if (n := context_length(spec)) is None:
                continue
            if self.max_seq_len > n:
                bad("max_seq_len", f"an integer in [1, {n}] (the context of {spec})")
            if self.response_max_new_tokens >= n:
                bad("response_max_new_tokens", f"an integer in [1, {n - 1}] (the context of "
                    f"{spec}, the prompt included)")
        if self.method == "topn":
            if self.top_layers > d.n_layers:
                bad("top_layers", f"an integer in [1, {d.n_layers}] (the layers of {d.name})")
            t = model_shape(target)
            if self.topk > t.vocab_size:
                bad("topk", f"an integer in [1, {t.vocab_size}] (the vocabulary of {t.name})")
        if self.cheap_layers is not None:
            try:
                parse_layer_spec(self.cheap_layers, d.n_layers)
            except SpecfairError:
                bad("cheap_layers", f"layers of {d.name}: indices in [0, {d.n_layers - 1}], "
                    f"first:K or every:N with K, N in [1, {d.n_layers}]")
        if self.method == "lora" and (unknown := set(self.lora_targets) - d.linear_names):
            bad("lora_targets", f"names of linear modules of {d.name} "
                f"({', '.join(sorted(d.linear_names))}); unknown: {', '.join(sorted(unknown))}")

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
        check_table(origin, section, d, cls.field_types(), RULES)
        full = {**cls.defaults(), **d}
        if isinstance(full["lora_targets"], str):
            full["lora_targets"] = full["lora_targets"].split(",")
        cls._check(full, origin, section)
        cfg = cls(**d)
        cfg.origin, cfg.section = origin, section
        return cfg

    @classmethod
    def defaults(cls) -> dict[str, Any]:
        return {f.name: f.default_factory() if f.default_factory is not dataclasses.MISSING
                else f.default for f in dataclasses.fields(cls)}

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
                d = loads_json(path.read_text(encoding="utf-8"))
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
