"""The stages of ``specfair experiment`` (see :mod:`specfair.experiment`): what each one computes
and writes in the run directory."""

from __future__ import annotations

import dataclasses
import os
import platform
import shutil
import sys
import time
from pathlib import Path

from rich.console import Console

from specfair import __version__
from specfair.decoding.proposer import as_proposer
from specfair.distill.cached import train_cached
from specfair.distill.commands import build_examples, select_train_prompts
from specfair.distill.config import DistillConfig
from specfair.distill.export import export_drafter, load_drafter
from specfair.distill.router import ClassifierRoutedDrafter, TaskRoutedDrafter
from specfair.distill.routing import train_task_router, with_routing
from specfair.distill.trainer import train
from specfair.errors import SpecfairError
from specfair.experiment.config import ExperimentConfig
from specfair.measure.bench import BENCH_SUMMARY_FILE, load_bench_records, model_dtype, run_bench
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
from specfair.tasks import load_suite, sample_per_task

console = Console(stderr=True)


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
    run.cfg.check_models()  # the limits that depend on the models, now fetched
    # A smoke answer from the target (greedy, streamed): proves the weights are sane before
    # a long run of measuring; kept in the stage record.
    pair = run.pair()
    console.print(f"[bold]smoke test[/] ({run.cfg.target}, greedy): {SMOKE_PROMPT}")
    answer = smoke_answer(pair.target, pair.tokenizer, SMOKE_PROMPT, max_new_tokens=40)
    return {"smoke_prompt": SMOKE_PROMPT, "smoke_answer": answer}


def _settings(run: Run, drafter) -> dict:
    """The run's record settings; with a per-task drafter, its ``routing`` too."""
    routed = isinstance(drafter, TaskRoutedDrafter | ClassifierRoutedDrafter)
    return {**run.record_settings(), **({"routing": run.cfg.routing} if routed else {})}


def _bench(run: Run, drafter, out: Path, label: str, prompts=None) -> dict:
    cfg, pair = run.cfg, run.pair()
    prompts = prompts if prompts is not None else run.test_prompts(cfg.bench["n_per_task"])
    kw = dict(gamma=cfg.gamma, max_new_tokens=cfg.bench["max_new_tokens"], seed=cfg.seed,
              drafter_label=label, target_label=cfg.target,
              extra_settings=_settings(run, drafter))  # fmt: skip
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
              extra_settings=_settings(run, drafter))  # fmt: skip
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
    dtype = model_dtype(pair.target)
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
                       resume=resume)
    tasks = sorted({e.task for e in train_ex}) if cfg.weighting == "per-task" else None
    export_drafter(result.student, pair.tokenizer, run.variant(variant) / "drafter",
                   tasks=tasks, dtype=dtype,
                   meta={"variant": variant, "weighting": cfg.weighting, "loss": cfg.loss,
                         "method": cfg.method, "top_layers": cfg.top_layers})
    shutil.copy(out / "train_log.jsonl", run.variant(variant) / "train_log.jsonl")
    info = {"steps": result.steps}
    if tasks and run.cfg.routing == "classifier":  # the task router of the per-task copies
        _, ev = train_task_router(run.variant(variant) / "drafter", run.suite().prompts("train"),
                                  run.test_prompts(run.cfg.estimate["n_per_task"]), dtype=dtype,
                                  device=str(pair.target.device))
        info["routing_accuracy"] = ev["routing_accuracy"]
    return info


def _stage_eval(run: Run, variant: str) -> dict:
    pair = run.pair()
    dtype = model_dtype(pair.target)
    export = run.variant(variant) / "drafter"
    drafter = load_drafter(export, dtype=dtype, device=str(pair.target.device))
    drafter = with_routing(drafter, run.cfg.routing, export, pair.tokenizer)
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


def run_stage(run: Run, stage: str) -> dict:
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


def clear_stage_outputs(run: Run, stage: str) -> None:
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

