"""``run_experiment``: the run directory, its lock and configuration, and the stages in order
(each skipped when its marker exists)."""

from __future__ import annotations

import json
import time
from pathlib import Path

from specfair.errors import SpecfairError
from specfair.experiment.config import ExperimentConfig, dependents, stage_names
from specfair.experiment.stages import Run, clear_stage_outputs, console, environment, run_stage
from specfair.measure.io import read_json, write_json
from specfair.rundir import check_out_dir, dir_lock


def run_experiment(config: str | Path | None, run_dir: str | Path | None = None,
                   force: list[str] | None = None, data_root: str | None = None) -> Path:
    cfg = ExperimentConfig.load(config)
    if data_root:
        cfg.data_root = data_root
    cfg.check_suite(str(config or "default"))
    cfg.check_models(fetched_only=True)  # else at the models stage, before any weights load
    for stage in force or []:
        dependents(stage, cfg)  # an unknown stage is refused before anything is written
    run_path = check_out_dir(Path("runs") / cfg.name if run_dir is None else run_dir,
                             "--run-dir")
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
        for s in dependents(stage, cfg):
            run.marker(s).unlink(missing_ok=True)
            clear_stage_outputs(run, s)
    stages = stage_names(cfg)
    t_all = time.perf_counter()
    for i, stage in enumerate(stages, start=1):
        if run.done(stage):
            console.print(f"[dim][{i}/{len(stages)}] {stage}: done, skipped[/]")
            continue
        console.rule(f"[bold][{i}/{len(stages)}] {stage}")
        t0 = time.perf_counter()
        info = run_stage(run, stage)
        run.mark(stage, time.perf_counter() - t0, info)
        console.print(f"[green]{stage} finished in {time.perf_counter() - t0:.0f} s[/]")
    smoke = read_json(run.marker("models")) if run.marker("models").is_file() else {}
    if smoke.get("smoke_answer"):
        console.print(f"[bold]smoke answer[/] of {cfg.target} to {smoke['smoke_prompt']!r}:")
        console.print(smoke["smoke_answer"], markup=False, highlight=False)
    console.print(f"experiment finished in {time.perf_counter() - t_all:.0f} s; "
                  f"report: {run_path / 'report.html'}")  # fmt: skip
    return run_path


