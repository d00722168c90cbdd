"""Fault tests for training, as for the bench: ``specfair distill`` and ``specfair experiment``
are SIGKILLed at a random training step, rerun, and must end with the same numbers as an
uninterrupted run (seeded) and no duplicate log records."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file
from test_experiment import write_config, write_suite

SRC = str(Path(__file__).resolve().parents[1] / "src")
DISTILL_TOML = """[distill]
steps = 12
batch_size = 2
checkpoint_every = 1
reestimate_every = 3
heldout_per_task = 1
response_max_new_tokens = 4
lora_rank = 2
max_prompts_per_task = 3
progress = false
"""


def steps_logged(log: Path) -> int:
    if not log.is_file():
        return 0
    lines = log.read_text().splitlines()
    steps = [json.loads(x)["step"] for x in lines[:-1] if '"loss"' in x]  # last may be torn
    return max(steps, default=0)


def kill_at_step(cmd: list[str], log: Path, step: int, timeout: float = 900) -> None:
    """Run ``cmd`` and SIGKILL it once ``log`` holds training step ``step``."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while steps_logged(log) < step:
            if proc.poll() is not None:
                pytest.fail(f"finished before step {step}: {proc.stderr.read()[-2000:]!r}")
            if time.monotonic() - t0 > timeout:
                pytest.fail("no progress")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def step_records(log: Path) -> list[dict]:
    return [r for r in map(json.loads, log.read_text().splitlines()) if "loss" in r]


def assert_same_training(a: Path, b: Path) -> None:
    ra, rb = step_records(a / "train_log.jsonl"), step_records(b / "train_log.jsonl")
    assert [r["step"] for r in rb] == list(range(1, len(rb) + 1))  # no duplicates, no gaps
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    assert [r["loss"] for r in ra] == pytest.approx([r["loss"] for r in rb], abs=1e-6)
    sa, sb = (json.loads((p / "distill_summary.json").read_text()) for p in (a, b))
    alpha = [{t: v["alpha"] for t, v in s["alpha_after"].items()} for s in (sa, sb)]
    assert alpha[0] == pytest.approx(alpha[1], abs=1e-6)


def test_distill_sigkill_at_a_random_step_resumes_to_the_same_result(tiny_pair, tmp_path):
    from specfair.distill.commands import distill_command

    suite = write_suite(tmp_path)
    cfg = tmp_path / "distill.toml"
    cfg.write_text(DISTILL_TOML)
    kw = dict(suite=str(suite), target=str(tiny_pair[0]), drafter=str(tiny_pair[1]),
              config_file=cfg, device="cpu")
    straight = distill_command(tmp_path / "a", **kw)
    # >= 8 steps left when the kill is sent, so that the run has not finished when it arrives
    step = random.Random(os.getpid()).randint(1, 4)
    cmd = [sys.executable, "-m", "specfair", "distill", "--out", str(tmp_path / "b"),
           "--suite", str(suite), "--target", str(tiny_pair[0]), "--drafter",
           str(tiny_pair[1]), "--config", str(cfg), "--device", "cpu"]
    kill_at_step(cmd, tmp_path / "b" / "train_log.jsonl", step)
    assert not (tmp_path / "b" / "distill_summary.json").exists()
    resumed = distill_command(tmp_path / "b", resume=True, **kw)
    assert_same_training(tmp_path / "a", tmp_path / "b")
    wa, wb = (load_file(str(p / "model.safetensors")) for p in (straight, resumed))
    assert wa.keys() == wb.keys()
    for n in wa:
        assert (wa[n] - wb[n]).abs().max() <= 1e-5, (step, n)


def test_experiment_sigkill_at_a_random_step_resumes_to_the_same_result(tiny_pair, tmp_path):
    from specfair.experiment import run_experiment

    cfg = write_config(tmp_path, tiny_pair, write_suite(tmp_path))
    text = (cfg.read_text().replace("steps = 2", "steps = 4")
            .replace("n_per_task = 2", "n_per_task = 1").replace("n_per_task = 3", "n_per_task = 1")
            .replace('bench_variants = ["balanced", "per-task", "topn-per-task"]',
                     "bench_variants = []"))
    text = text.replace('[variants.per-task]\nweighting = "per-task"\n', "")
    cfg.write_text(text.replace('[variants.topn-per-task]\nweighting = "per-task"\n'
                                'method = "topn"\ntop_layers = 1\ntopk = 8\n', ""))
    run_experiment(str(cfg), tmp_path / "a")
    variant, step = "balanced", random.Random(os.getpid()).randint(1, 3)
    cmd = [sys.executable, "-m", "specfair", "experiment", str(cfg), "--run-dir",
           str(tmp_path / "b")]
    kill_at_step(cmd, tmp_path / "b" / "variants" / variant / "train" / "train_log.jsonl",
                 step)
    assert not (tmp_path / "b" / "stages" / "report.json").exists()
    run_experiment(str(cfg), tmp_path / "b")
    for v in ("balanced",):
        assert_same_training(tmp_path / "a" / "variants" / v / "train",
                             tmp_path / "b" / "variants" / v / "train")
        ea, eb = (json.loads((r / "variants" / v / "estimate_summary.json").read_text())
                  for r in (tmp_path / "a", tmp_path / "b"))
        for t in ea["tasks"]:
            assert ea["tasks"][t]["alpha"]["mean"] == pytest.approx(
                eb["tasks"][t]["alpha"]["mean"], abs=1e-6), (variant, step, v, t)
    for f in ("baseline/bench.jsonl", "baseline/estimate.jsonl",
              "variants/balanced/estimate.jsonl"):
        recs = [json.loads(x) for x in (tmp_path / "b" / f).read_text().splitlines()]
        keys = [(r["id"], r.get("mode")) for r in recs]
        assert len(keys) == len(set(keys)), f


def test_distill_that_diverges_ends_with_one_error_and_writes_no_drafter(cli, tiny_pair,
                                                                          tmp_path):
    """``--lr 1e30`` is finite (the settings accept it) but the weights blow up within a few
    steps: one ``error:`` line naming the step, exit 2, the finite checkpoints before it kept,
    no ``drafter/`` and no summary."""
    suite = write_suite(tmp_path)
    cfg = tmp_path / "distill.toml"
    cfg.write_text(DISTILL_TOML.replace("steps = 12", "steps = 8"))
    out = tmp_path / "run"
    code, _, err = cli("distill", "--out", out, "--suite", suite, "--target", tiny_pair[0],
                       "--drafter", tiny_pair[1], "--config", cfg, "--device", "cpu",
                       "--lr", "1e30")
    lines = [x for x in err.strip().splitlines() if x.startswith("error:")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("error: training diverged at step ")
    assert "no drafter was written" in lines[0]
    assert not (out / "drafter").exists() and not (out / "distill_summary.json").exists()
    for ckpt in (out / "checkpoints").glob("step-*"):
        w = load_file(str(ckpt / "trainable.safetensors"))
        assert all(bool(t.isfinite().all()) for t in w.values()), ckpt
