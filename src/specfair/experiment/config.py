"""The experiment's settings (``ExperimentConfig``, one TOML file checked whole at load time)
and its stage names."""

from __future__ import annotations

import dataclasses
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from specfair.defaults import DEFAULT_DRAFTER, DEFAULT_GAMMA, DEFAULT_TARGET
from specfair.distill.config import DistillConfig
from specfair.errors import SpecfairError
from specfair.schema import Rule, check_table, suggest, value_error
from specfair.tasks import load_suite

BASE_STAGES = ("models", "baseline-bench", "baseline-estimate", "data")


# The [bench], [estimate] and [report] tables: their keys, types and defaults (one place).
SECTIONS: dict[str, dict[str, tuple[Any, Any]]] = {
    "bench": {"n_per_task": (int | None, 2), "max_new_tokens": (int, 32)},
    "estimate": {"n_per_task": (int | None, 6), "max_new_tokens": (int, 32)},
    "report": {"bench_variants": (list[str] | str, [])},
}
DTYPES = ("auto", "bfloat16", "float32", "float16")
# What each value must be beyond its type, per table ("" the top level; schema.check_table).
RULES: dict[str, dict[str, Rule]] = {
    "": {"name": Rule(plain=True), "dtype": Rule(choices=DTYPES), "gamma": Rule(ge=1),
         "routing": Rule(choices=("oracle", "classifier"))},
    "bench": {"n_per_task": Rule(ge=1), "max_new_tokens": Rule(ge=1)},
    "estimate": {"n_per_task": Rule(ge=1), "max_new_tokens": Rule(ge=1)},
    "report": {"bench_variants": Rule(unique=True)},
}


def _section_defaults(name: str) -> dict:
    return {k: default for k, (_, default) in SECTIONS[name].items()}


@dataclass
class ExperimentConfig:
    name: str = "default"
    target: str = DEFAULT_TARGET
    drafter: str = DEFAULT_DRAFTER
    suite: str = "default"
    data_root: str | None = None
    dtype: str = "auto"
    device: str = "auto"
    gamma: int = DEFAULT_GAMMA
    seed: int = 0
    routing: str = "oracle"  # per-task variants: "oracle" (labels) | "classifier" (task router)
    bench: dict = field(default_factory=lambda: _section_defaults("bench"))
    estimate: dict = field(default_factory=lambda: _section_defaults("estimate"))
    distill: dict = field(default_factory=dict)
    variants: dict = field(default_factory=dict)
    report: dict = field(default_factory=lambda: _section_defaults("report"))
    origin: typing.ClassVar[str] = "experiment config"  # the file, for error messages

    @classmethod
    def load(cls, spec: str | Path | None) -> ExperimentConfig:
        """``spec``: None/'default', 'full' (packaged) or a TOML file path. The whole file is
        checked (keys, types, values; errors name the file, section and key)."""
        spec = "default" if spec is None else str(spec)
        if spec in ("default", "full"):
            text = resources.files("specfair.configs").joinpath(f"experiment_{spec}.toml")
            raw, origin = tomllib.loads(text.read_text(encoding="utf-8")), f"packaged:{spec}"
        else:
            path = Path(spec)
            if not path.is_file():
                raise SpecfairError(f"experiment config not found: {path}")
            try:
                raw = tomllib.loads(path.read_text(encoding="utf-8"))
            except UnicodeDecodeError as e:
                raise SpecfairError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})"
                                    ) from None
            except tomllib.TOMLDecodeError as e:
                raise SpecfairError(f"{path}: invalid TOML: {e}") from e
            origin = str(path)
        return cls.from_dict(raw, origin)

    @classmethod
    def from_dict(cls, raw: dict, origin: str = "experiment config") -> ExperimentConfig:
        hints = typing.get_type_hints(cls)
        check_table(origin, "", raw, {f.name: hints[f.name] for f in dataclasses.fields(cls)},
                    RULES[""])
        over = {}
        for name, spec in SECTIONS.items():
            table = raw.get(name, {})
            check_table(origin, name, table, {k: t for k, (t, _) in spec.items()}, RULES[name])
            over[name] = {**_section_defaults(name), **table}
        cfg = cls(**{**raw, **over})
        cfg.origin = origin
        if not cfg.variants:
            raise SpecfairError(f"{origin}: no [variants.*] defined")
        DistillConfig.from_dict(dict(cfg.distill), origin, "distill")
        for name, table in cfg.variants.items():  # every variant checked up front
            if not name.replace("-", "_").isidentifier():
                raise SpecfairError(f"{origin}: bad variant name {name!r}")
            if not isinstance(table, dict):
                raise SpecfairError(f"{origin}: [variants.{name}] should be a table")
            DistillConfig.from_dict(dict(table), origin, f"variants.{name}")
            DistillConfig.from_dict({**cfg.distill, **table}, origin, f"variants.{name}")
        bv = cfg.report["bench_variants"]
        if isinstance(bv, str) and bv != "all":
            raise SpecfairError(f"{origin}: bench_variants = {bv!r} in [report] should be "
                                "'all' or a list of variant names")
        for v in [] if isinstance(bv, str) else bv:
            if v not in cfg.variants:
                raise SpecfairError(f"{origin}: bench_variants in [report] names {v!r}, not a "
                                    f"variant{suggest(v, cfg.variants)}")
        cfg.check_values(origin)
        return cfg

    def check_suite(self, origin: str) -> None:
        """Load the suite (its own errors surface now) and refuse task names it lacks."""

        tasks = load_suite(self.suite, data_root=self.data_root, seed=self.seed).tasks
        for name, table in [("distill", self.distill), *self.variants.items()]:
            over = {**self.distill, **table} if name != "distill" else table
            DistillConfig().with_overrides(**over).check_tasks(tasks, origin)

    def check_values(self, origin: str) -> None:
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise value_error(origin, "", "device", self.device, "auto, cpu, cuda or cuda:N")

    def check_models(self, fetched_only: bool = False) -> None:
        """Every variant's model-dependent limits (layers, vocabulary, LoRA modules), from
        the models' configs alone. ``fetched_only``: skip it while a known model is not in
        the cache yet (the ``models`` stage fetches it, then checks again)."""
        from specfair.models.registry import KNOWN_MODELS, is_cached

        if fetched_only and any(m in KNOWN_MODELS and not is_cached(m)
                                for m in (self.target, self.drafter)):
            return
        origin = self.origin
        for name, table in self.variants.items():
            dc = DistillConfig.from_dict({**self.distill, **table}, origin, f"variants.{name}")
            dc.check_models(self.target, self.drafter, origin,
                            lambda k, n=name, t=table: f"variants.{n}" if k in t else "distill")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if d["routing"] == "oracle":  # the default: runs from before the key stay resumable
            del d["routing"]
        return d

    def bench_variants(self) -> list[str]:
        bv = self.report.get("bench_variants", [])
        return list(self.variants) if bv == "all" else [v for v in bv if v in self.variants]


def stage_names(cfg: ExperimentConfig) -> list[str]:
    names = list(BASE_STAGES)
    names += [f"train-{v}" for v in cfg.variants]
    names += [f"eval-{v}" for v in cfg.variants]
    return names + ["report"]


def dependents(stage: str, cfg: ExperimentConfig) -> list[str]:
    """The stage and every later stage whose inputs it produces."""
    names = stage_names(cfg)
    if stage not in names:
        raise SpecfairError(f"unknown stage {stage!r}; stages: {', '.join(names)}")
    if stage.startswith("train-"):
        return [stage, "eval-" + stage[6:], "report"]
    if stage.startswith("eval-"):
        return [stage, "report"]
    if stage == "report":
        return ["report"]
    return names[names.index(stage):]


