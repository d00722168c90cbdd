"""``specfair experiment``: from nothing to a report, in cached stages.

Stages, in order (each writes its outputs under the run directory and a marker
``stages/<stage>.json`` when it is complete; a completed stage is skipped on the next run, so a
killed run resumes where it stopped; ``--force STAGE`` redoes one stage and everything that
depends on it):

1. ``models``            fetch / convert the known models (no-op when cached), a greedy smoke
                          answer from the target
2. ``baseline-bench``    AR vs SD on the test prompts with the original drafter
3. ``baseline-estimate`` teacher-forced α, CE, KL per task on the test prompts (greedy target
                          answers reused from the bench where they exist)
4. ``data``               target responses for the TRAIN split (cached, resumable)
5. ``train-<variant>``    fine-tune the drafter (checkpoints; resumes mid-training)
6. ``eval-<variant>``     estimate (and, for ``report.bench_variants``, benchmark SD) with the
                          fine-tuned drafter on the same test prompts; AR records are reused
                          from the baseline bench (the target and prompts are the same)
7. ``report``             report.md + report.html

Inside a stage, the bench and estimate JSONL files and the training checkpoints resume too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import shutil
import sys
import time
import tomllib
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

from specfair import __version__
from specfair.decoding.proposer import as_proposer
from specfair.defaults import DEFAULT_DRAFTER, DEFAULT_GAMMA, DEFAULT_TARGET
from specfair.distill.cached import train_cached
from specfair.distill.commands import build_examples, select_train_prompts
from specfair.distill.config import DistillConfig
from specfair.distill.export import export_drafter, load_drafter
from specfair.distill.trainer import train
from specfair.errors import SpecfairError
from specfair.measure.bench import BENCH_SUMMARY_FILE, load_bench_records, run_bench
from specfair.measure.bench_summary import summarize_bench
from specfair.measure.estimate import ESTIMATE_SUMMARY_FILE, measure_cost_ratio, run_estimate
from specfair.measure.estimate_summary import summarize_estimate
from specfair.measure.io import append_jsonl, read_json, write_json
from specfair.measure.responses import fill_responses_batched
from specfair.models import load_model, load_pair
from specfair.models.cpu_kernels import pack_linears
from specfair.models.fetch import fetch_model
from specfair.models.hardware import cpu_supports_bf16
from specfair.models.registry import KNOWN_MODELS
from specfair.models.smoke import smoke_answer
from specfair.report import build_report
from specfair.rundir import check_out_dir, dir_lock
from specfair.schema import check_table, suggest
from specfair.tasks import load_suite, sample_per_task

console = Console(stderr=True)

BASE_STAGES = ("models", "baseline-bench", "baseline-estimate", "data")


# The [bench], [estimate] and [report] tables: their keys, types and defaults (one place).
SECTIONS: dict[str, dict[str, tuple[Any, Any]]] = {
    "bench": {"n_per_task": (int | None, 2), "max_new_tokens": (int, 32)},
    "estimate": {"n_per_task": (int | None, 6), "max_new_tokens": (int, 32)},
    "report": {"bench_variants": (list[str] | str, [])},
}
DTYPES = ("auto", "bfloat16", "float32", "float16")


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
    bench: dict = field(default_factory=lambda: _section_defaults("bench"))
    estimate: dict = field(default_factory=lambda: _section_defaults("estimate"))
    distill: dict = field(default_factory=dict)
    variants: dict = field(default_factory=dict)
    report: dict = field(default_factory=lambda: _section_defaults("report"))

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
        check_table(origin, "", raw, {f.name: hints[f.name] for f in dataclasses.fields(cls)})
        over = {}
        for name, spec in SECTIONS.items():
            table = raw.get(name, {})
            check_table(origin, name, table, {k: t for k, (t, _) in spec.items()})
            over[name] = {**_section_defaults(name), **table}
        cfg = cls(**{**raw, **over})
        if not cfg.variants:
            raise SpecfairError(f"{origin}: no [variants.*] defined")
        DistillConfig.from_dict(dict(cfg.distill), origin, "distill")
        for name, table in cfg.variants.items():  # every variant checked up front
            if not name.replace("-", "_").isidentifier():
                raise SpecfairError(f"{origin}: bad variant name {name!r}")
            if not isinstance(table, dict):
                raise SpecfairError(f"{origin}: [variants.{name}] should be a table")
            DistillConfig.from_dict(dict(table), origin, f"variants.{name}")
            DistillConfig().with_overrides(**{**cfg.distill, **table})
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
        def bad(section: str, key: str, why: str) -> None:
            where = f"[{section}]" if section else "the top level"
            raise SpecfairError(f"{origin}: {key} in {where} {why}")

        if self.gamma < 1:
            bad("", "gamma", "must be >= 1")
        if self.dtype not in DTYPES:
            bad("", "dtype", f"must be one of {', '.join(DTYPES)}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            bad("", "device", "must be auto, cpu or cuda")
        for section in ("bench", "estimate"):
            table = getattr(self, section)
            if table["max_new_tokens"] < 1:
                bad(section, "max_new_tokens", "must be >= 1")
            if table["n_per_task"] is not None and table["n_per_task"] < 1:
                bad(section, "n_per_task", "must be >= 1")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def bench_variants(self) -> list[str]:
        bv = self.report.get("bench_variants", [])
        return list(self.variants) if bv == "all" else [v for v in bv if v in self.variants]


def stage_names(cfg: ExperimentConfig) -> list[str]:
    names = list(BASE_STAGES)
    names += [f"train-{v}" for v in cfg.variants]
    names += [f"eval-{v}" for v in cfg.variants]
    return names + ["report"]


def _dependents(stage: str, cfg: ExperimentConfig) -> list[str]:
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


def environment(cfg: ExperimentConfig) -> dict:
    import torch
    import transformers


    env = {
        "specfair": __version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "transformers": transformers.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "models": {},
    }
    for role, name in (("target", cfg.target), ("drafter", cfg.drafter)):
        km = KNOWN_MODELS.get(name)
        env["models"][role] = {"name": name, "gguf_sha256": km.sha256 if km else None}
    try:
        import peft

        env["peft"] = peft.__version__
    except ImportError:
        pass
    return env


class Run:
    """The run directory and its stage markers."""

    def __init__(self, run_dir: Path, cfg: ExperimentConfig) -> None:
        self.dir, self.cfg = run_dir, cfg
        self._pair, self._kernels = None, None
        self.teacher_store: dict = {}  # target hidden states, shared by the variants' training

    def marker(self, stage: str) -> Path:
        return self.dir / "stages" / f"{stage}.json"

    def done(self, stage: str) -> bool:
        return self.marker(stage).is_file()

    def mark(self, stage: str, seconds: float, info: dict | None = None) -> None:
        write_json(self.marker(stage), {"stage": stage, "seconds": round(seconds, 1),
                                        "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
                                        **(info or {})})  # fmt: skip

    # --- paths
    @property
    def baseline(self) -> Path:
        return self.dir / "baseline"

    def variant(self, name: str) -> Path:
        return self.dir / "variants" / name

    # --- shared, loaded once per kind
    def pair(self, kernels: str = "auto"):
        """The target/drafter pair; ``kernels="auto"`` (fast inference, see
        :mod:`specfair.models.cpu_kernels`) for measuring and generating, ``"default"`` where
        the target's weights are used directly (training). One kind is held at a time."""
        if self._pair is None or self._kernels != kernels:
            import gc


            self._pair = None
            gc.collect()
            with console.status(f"loading the target/drafter pair (kernels={kernels})"):
                self._pair = load_pair(self.cfg.target, self.cfg.drafter, self.cfg.dtype,
                                       self.cfg.device, kernels=kernels)  # fmt: skip
            self._kernels = kernels
        return self._pair

    def suite(self):
        return load_suite(self.cfg.suite, data_root=self.cfg.data_root, seed=self.cfg.seed)

    def record_settings(self) -> dict:
        """The suite settings every bench/estimate record of this run carries."""
        suite = self.suite()
        return {"suite": self.cfg.suite, "data_hash": suite.content_hash(), "split": "test"}

    def test_prompts(self, n_per_task: int | None):
        prompts = self.suite().prompts("test")
        return sample_per_task(prompts, n_per_task, seed=self.cfg.seed)


# ----------------------------------------------------------------------------- stages


SMOKE_PROMPT = "Write a Python function that returns the n-th Fibonacci number."


def _stage_models(run: Run) -> dict:
    for name in (run.cfg.target, run.cfg.drafter):
        if name in KNOWN_MODELS:
            fetch_model(name)
    # A smoke answer from the target (greedy, streamed): proves the weights are sane before
    # a long run of measuring; kept in the stage record.
    pair = run.pair()
    console.print(f"[bold]smoke test[/] ({run.cfg.target}, greedy): {SMOKE_PROMPT}")
    answer = smoke_answer(pair.target, pair.tokenizer, SMOKE_PROMPT, max_new_tokens=40)
    return {"smoke_prompt": SMOKE_PROMPT, "smoke_answer": answer}


def _bench(run: Run, drafter, out: Path, label: str, prompts=None) -> dict:
    cfg, pair = run.cfg, run.pair()
    prompts = prompts if prompts is not None else run.test_prompts(cfg.bench["n_per_task"])
    kw = dict(gamma=cfg.gamma, max_new_tokens=cfg.bench["max_new_tokens"], seed=cfg.seed,
              drafter_label=label, target_label=cfg.target,
              extra_settings=run.record_settings())  # fmt: skip
    run_bench((pair.target, drafter, pair.tokenizer), prompts, out, **kw)
    summary = summarize_bench(out / "bench.jsonl", seed=cfg.seed)
    summary["meta"].update({"suite": cfg.suite, "split": "test", "variant": label})
    write_json(out / BENCH_SUMMARY_FILE, summary)
    return summary


def _estimate(run: Run, drafter, out: Path, label: str, c: float | None) -> dict:
    cfg, pair = run.cfg, run.pair()
    prompts = run.test_prompts(cfg.estimate["n_per_task"])
    max_new = cfg.estimate["max_new_tokens"]
    responses = run.baseline / "responses.jsonl"
    kw = dict(drafter_label=label, max_new_tokens=max_new, gamma=cfg.gamma, temperature=1.0,
              responses_path=responses, target_label=cfg.target,
              extra_settings=run.record_settings())  # fmt: skip
    if out == run.baseline:
        bench_file = run.baseline / "bench.jsonl"
        kw["bench_path"] = bench_file
        benched = {r["id"] for r in load_bench_records(bench_file)} if bench_file.exists() else ()
        # Prompts without a bench answer get theirs in batches (much faster than one by one).
        fill_responses_batched(pair.target, pair.tokenizer,
                               [p for p in prompts if p.id not in benched], responses,
                               max_new_tokens=max_new)  # fmt: skip
    path = run_estimate(pair.target, drafter, pair.tokenizer, prompts, out, **kw)
    c_source = "baseline"
    if c is None:
        c = measure_cost_ratio(pair.target, as_proposer(drafter).for_task(None))
        c_source = "measured"
    summary = summarize_estimate(path, c=c, gamma=cfg.gamma, seed=cfg.seed,
                                 meta={"c_source": c_source, "variant": label,
                                       "suite": cfg.suite})  # fmt: skip
    write_json(out / ESTIMATE_SUMMARY_FILE, summary)
    return summary


def _stage_baseline_bench(run: Run) -> dict:
    # Labelled with the drafter's name, so a `specfair bench` run with the same settings in
    # this directory is picked up (resumed) rather than redone.
    s = _bench(run, run.pair().drafter, run.baseline, run.cfg.drafter)
    return {"overall_speedup": s["overall"]["speedup"]["mean"]}


def _stage_baseline_estimate(run: Run) -> dict:
    s = _estimate(run, run.pair().drafter, run.baseline, "baseline", None)
    return {"c": s["meta"]["c"]}


def _distill_config(run: Run, variant: str | None):
    over = {**run.cfg.distill, **(run.cfg.variants.get(variant, {}) if variant else {})}
    return DistillConfig().with_overrides(seed=run.cfg.seed, **over)


def _stage_data(run: Run) -> dict:
    pair = run.pair()
    cfg = _distill_config(run, None)
    if cfg.data_source in ("target", "both") and cfg.response_temperature == 0.0:
        fill_responses_batched(pair.target, pair.tokenizer, _train_prompts(run, cfg),
                               run.dir / "data" / "responses.jsonl",
                               max_new_tokens=cfg.response_max_new_tokens)  # fmt: skip
    train, held = build_examples(cfg, run.suite(), pair.target, pair.drafter, pair.tokenizer,
                                 run.dir / "data")  # fmt: skip
    return {"train_examples": len(train), "heldout_examples": len(held)}


def _train_prompts(run: Run, cfg) -> list:
    """The train prompts :func:`specfair.distill.commands.build_examples` will use."""

    return select_train_prompts(cfg, run.suite().prompts("train"))


def _stage_train(run: Run, variant: str) -> dict:
    pair = run.pair()
    cfg = _distill_config(run, variant)
    cfg = dataclasses.replace(cfg, responses_path=str(run.dir / "data" / "responses.jsonl"))
    out = run.variant(variant) / "train"
    train_ex, held_ex = build_examples(cfg, run.suite(), pair.target, pair.drafter,
                                       pair.tokenizer, out)  # fmt: skip
    dtype = str(pair.target.dtype).replace("torch.", "")
    if cfg.method == "topn":  # the drafter's top layers on cached target signals

        student = load_model(run.cfg.drafter, dtype=dtype, device=run.cfg.device)
        result = train_cached(cfg, pair.target, student, train_ex, held_ex, out,
                              names=(run.cfg.target, run.cfg.drafter),
                              store_root=run.dir / "data" / "signals",
                              bf16=cpu_supports_bf16())
    else:
        student = load_model(run.cfg.drafter, dtype="float32", device=run.cfg.device)
        resume = (out / "distill_config.json").is_file()
        result = train(cfg, pair.target, student, pair.tokenizer, train_ex, held_ex, out,
                       resume=resume,
                       teacher_store=run.teacher_store.setdefault(cfg.max_seq_len, {}))
    tasks = sorted({e.task for e in train_ex}) if cfg.weighting == "per-task" else None
    export_drafter(result.student, pair.tokenizer, run.variant(variant) / "drafter",
                   tasks=tasks, dtype=dtype,
                   meta={"variant": variant, "weighting": cfg.weighting, "loss": cfg.loss,
                         "method": cfg.method, "top_layers": cfg.top_layers})
    shutil.copy(out / "train_log.jsonl", run.variant(variant) / "train_log.jsonl")
    return {"steps": result.steps}


def _stage_eval(run: Run, variant: str) -> dict:
    pair = run.pair()
    dtype = str(pair.target.dtype).replace("torch.", "")
    drafter = load_drafter(run.variant(variant) / "drafter", dtype=dtype,
                           device=str(pair.target.device))  # fmt: skip
    if getattr(pair.drafter, "specfair_packed", False):  # as fast as the baseline's drafter

        for m in as_proposer(drafter).plain_models():
            m.requires_grad_(False)
            pack_linears(m)
    out = run.variant(variant)
    base_c = read_json(run.baseline / "estimate_summary.json")["meta"].get("c")
    layers_changed = run.cfg.variants[variant].get("cheap_layers") or run.cfg.distill.get(
        "cheap_layers")
    s = _estimate(run, drafter, out, variant, None if layers_changed else base_c)
    info = {"alpha": {t: v["alpha"]["mean"] for t, v in s["tasks"].items()}}
    if variant in run.cfg.bench_variants():
        bench_file = out / "bench.jsonl"
        if not bench_file.exists():  # reuse the baseline's AR runs: same target, same prompts
            for r in load_bench_records(run.baseline / "bench.jsonl"):
                if r["mode"] == "ar":
                    settings = {**r.get("settings", {}), "drafter": variant}
                    append_jsonl(bench_file, {**r, "drafter": variant, "settings": settings})
        b = _bench(run, drafter, out, variant)
        info["overall_speedup"] = b["overall"]["speedup"]["mean"]
    return info


def _stage_report(run: Run) -> dict:
    md, html = build_report(run.dir)
    return {"report_md": str(md), "report_html": str(html)}


# ----------------------------------------------------------------------------- driver


def run_experiment(config: str | Path | None, run_dir: str | Path | None = None,
                   force: list[str] | None = None, data_root: str | None = None) -> Path:
    cfg = ExperimentConfig.load(config)
    if data_root:
        cfg.data_root = data_root
    cfg.check_suite(str(config or "default"))
    for stage in force or []:
        _dependents(stage, cfg)  # an unknown stage is refused before anything is written
    run_path = check_out_dir(Path(run_dir or Path("runs") / cfg.name), "--run-dir")
    with dir_lock(run_path, "specfair experiment"):
        return _run_locked(cfg, run_path, force)


def _run_locked(cfg: ExperimentConfig, run_path: Path, force: list[str] | None) -> Path:
    cfg_file = run_path / "config.json"
    started = any((run_path / "stages").glob("*.json"))  # a run with nothing done is replaced
    if started and cfg_file.exists() and read_json(cfg_file) != json.loads(
            json.dumps(cfg.to_dict())):
        raise SpecfairError(f"{run_path} holds a run with another configuration; use another "
                            "--run-dir or delete it")
    write_json(cfg_file, cfg.to_dict())
    write_json(run_path / "environment.json", environment(cfg))
    run = Run(run_path, cfg)
    for stage in force or []:
        for s in _dependents(stage, cfg):
            run.marker(s).unlink(missing_ok=True)
            _clear_stage_outputs(run, s)
    stages = stage_names(cfg)
    t_all = time.perf_counter()
    for i, stage in enumerate(stages, start=1):
        if run.done(stage):
            console.print(f"[dim][{i}/{len(stages)}] {stage}: done, skipped[/]")
            continue
        console.rule(f"[bold][{i}/{len(stages)}] {stage}")
        t0 = time.perf_counter()
        info = _run_stage(run, stage)
        run.mark(stage, time.perf_counter() - t0, info)
        console.print(f"[green]{stage} finished in {time.perf_counter() - t0:.0f} s[/]")
    smoke = read_json(run.marker("models")) if run.marker("models").is_file() else {}
    if smoke.get("smoke_answer"):
        console.print(f"[bold]smoke answer[/] of {cfg.target} to {smoke['smoke_prompt']!r}:")
        console.print(smoke["smoke_answer"], markup=False, highlight=False)
    console.print(f"experiment finished in {time.perf_counter() - t_all:.0f} s; "
                  f"report: {run_path / 'report.html'}")  # fmt: skip
    return run_path


def _run_stage(run: Run, stage: str) -> dict:
    if stage == "models":
        return _stage_models(run)
    if stage == "baseline-bench":
        return _stage_baseline_bench(run)
    if stage == "baseline-estimate":
        return _stage_baseline_estimate(run)
    if stage == "data":
        return _stage_data(run)
    if stage.startswith("train-"):
        return _stage_train(run, stage[6:])
    if stage.startswith("eval-"):
        return _stage_eval(run, stage[5:])
    if stage == "report":
        return _stage_report(run)
    raise SpecfairError(f"unknown stage {stage}")


def _clear_stage_outputs(run: Run, stage: str) -> None:
    """Remove what a forced stage wrote, so it is recomputed rather than resumed."""
    targets: list[Path] = []
    if stage == "baseline-bench":
        targets = [run.baseline / "bench.jsonl", run.baseline / "bench_summary.json"]
    elif stage == "baseline-estimate":
        targets = [run.baseline / n for n in ("estimate.jsonl", "estimate_summary.json",
                                              "responses.jsonl")]  # fmt: skip
    elif stage == "data":
        targets = [run.dir / "data"]
    elif stage.startswith("train-"):
        v = run.variant(stage[6:])
        targets = [v / "train", v / "drafter", v / "train_log.jsonl"]
    elif stage.startswith("eval-"):
        v = run.variant(stage[5:])
        targets = [v / n for n in ("bench.jsonl", "bench_summary.json", "estimate.jsonl",
                                   "estimate_summary.json")]  # fmt: skip
    for t in targets:
        if t.is_dir():
            shutil.rmtree(t)
        else:
            t.unlink(missing_ok=True)

