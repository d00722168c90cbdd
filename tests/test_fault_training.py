"""Fault tests for training, as for the bench: ``specfair distill`` and ``specfair experiment``
are SIGKILLed at a random training step (the experiment also at a random point of its timed
stage), rerun, and must end with the same numbers as an uninterrupted run (seeded) and no
duplicate records."""

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
from study_data import write_study_sources

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


def write_suite(root: Path) -> Path:
    """A two-task JSONL suite of 24 prompts."""
    rows = [{"task": task, "id": f"{task}-{i}", "prompt": template.format(f"w{i}x")}
            for task, template in (("alpha", "Say something about {}."),
                                   ("beta", "Count the letters of {}.")) for i in range(12)]
    (root / "prompts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    suite = root / "suite.toml"
    suite.write_text('name = "tiny"\ntest_fraction = 0.4\n[sources.tiny]\nformat = "jsonl"\n'
                     'path = "prompts.jsonl"\n')
    return suite


def steps_logged(log: Path) -> int:
    if not log.is_file():
        return 0
    lines = log.read_text().splitlines()
    steps = [json.loads(x)["step"] for x in lines[:-1] if '"loss"' in x]  # last may be torn
    return max(steps, default=0)


def kill_when(cmd: list[str], done, timeout: float = 900) -> None:
    """Run ``cmd`` and SIGKILL it once ``done()`` holds."""
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t0 = time.monotonic()
    try:
        while not done():
            if proc.poll() is not None:
                pytest.fail(f"finished first: {proc.stderr.read()[-2000:]!r}")
            if time.monotonic() - t0 > timeout:
                pytest.fail("no progress")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()


def kill_at_step(cmd: list[str], log: Path, step: int, timeout: float = 900) -> None:
    """Run ``cmd`` and SIGKILL it once ``log`` holds training step ``step``."""
    kill_when(cmd, lambda: steps_logged(log) >= step, timeout)


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


EXPERIMENT_TOML = """target = "{t}"
drafter = "{d}"
n_train = 4
n_test = 2
n_heldout = 1
max_prompt_tokens = 24
train_response_tokens = 6
test_response_tokens = 6
topk = 8
top_layers = 1
batch_size = 2
epochs = 1.0
budgets = [0.5, 1.0]
lr = 1e-3
overfit_epochs = 1.0
bootstrap = 20
arms = ["uniform"]
n_bench = 1
gamma = 3
"""


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.is_file() else 0


@pytest.mark.parametrize("stage", ["training", "timed"])
def test_experiment_sigkill_resumes_to_the_same_result(long_pair, tmp_path, monkeypatch, stage):
    from specfair.study.config import StudyConfig
    from specfair.study.run import run_study

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    cfg = tmp_path / "exp.toml"
    cfg.write_text(EXPERIMENT_TOML.format(t=long_pair[0], d=long_pair[1]))
    run_study(StudyConfig.load(cfg), tmp_path / "a")
    a, b = tmp_path / "a", tmp_path / "b"
    cmd = [sys.executable, "-m", "specfair", "experiment", str(cfg), "--run-dir", str(b)]
    rng = random.Random(os.getpid())
    if stage == "training":
        kill_at_step(cmd, b / "arms" / "uniform" / "train_log.jsonl", rng.randint(1, 6))
    else:  # 8 prompts AR + SD with the base drafter, then the uniform arm's SD runs
        kill_when(cmd, lambda n=rng.randint(1, 12): _lines(b / "timed/base/bench.jsonl") >= n)
    assert not (b / "report.md").exists()
    run_study(StudyConfig.load(cfg), b)
    ea, eb = ([json.loads(x) for x in (r / "eval.jsonl").read_text().splitlines()]
              for r in (a, b))
    key = lambda r: (r["arm"], r["budget"], r["id"])  # noqa: E731
    assert sorted(map(key, eb)) == sorted(map(key, ea))  # complete, no duplicate
    alpha = {key(r): r["alpha"] for r in ea}
    assert all(r["alpha"] == pytest.approx(alpha[key(r)], abs=1e-5) for r in eb)
    for arm in ("base", "uniform"):
        ba, bb = ([json.loads(x) for x in (r / "timed" / arm / "bench.jsonl").read_text()
                   .splitlines()] for r in (a, b))
        assert sorted((r["id"], r["mode"]) for r in bb) == sorted((r["id"], r["mode"])
                                                                  for r in ba), arm
        tokens = {(r["id"], r["mode"]): r["tokens"] for r in ba}
        assert all(r["tokens"] == tokens[(r["id"], r["mode"])] for r in bb), arm
    assert (b / "report.html").is_file() and json.loads((b / "timed.json").read_text())


def test_experiment_killed_on_the_way_to_a_budget_resumes_from_its_midway_checkpoint(
        long_pair, tmp_path, monkeypatch, capsys):
    """``SPECFAIR_CHECKPOINT_S=0``: a checkpoint after every step; SIGKILLed between two
    budgets, the rerun resumes from the last step's checkpoint (not from the budget's, not
    from the start) and ends with the records, train log and weights of an uninterrupted
    run."""
    from specfair.errors import SpecfairError
    from specfair.study.config import StudyConfig
    from specfair.study.run import run_study

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    write_study_sources(tmp_path / "home" / "data")
    cfg = tmp_path / "exp.toml"
    cfg.write_text(EXPERIMENT_TOML.format(t=long_pair[0], d=long_pair[1]).replace(
        "n_bench = 1", "n_bench = 0"))
    run_study(StudyConfig.load(cfg), tmp_path / "a")
    a, b = tmp_path / "a", tmp_path / "b"
    monkeypatch.setenv("SPECFAIR_CHECKPOINT_S", "0")
    cmd = [sys.executable, "-m", "specfair", "experiment", str(cfg), "--run-dir", str(b)]
    log = b / "arms" / "uniform" / "train_log.jsonl"
    kill_at_step(cmd, log, random.Random(os.getpid()).randint(2, 5))
    # a checkpoint is there whenever the kill came (atomic_dir swaps old and new in one step)
    meta = json.loads((b / "arms" / "uniform" / "checkpoint" / "state.json").read_text())
    assert meta["step"] >= 1
    capsys.readouterr()
    run_study(StudyConfig.load(cfg), b)
    said = capsys.readouterr()
    if meta.get("midway"):  # killed between two budgets' checkpoints (else at a budget's)
        assert f"resumed from its checkpoint at step {meta['step']}" in said.out + said.err
    ea, eb = ([json.loads(x) for x in (r / "eval.jsonl").read_text().splitlines()]
              for r in (a, b))
    key = lambda r: (r["arm"], r["budget"], r["id"])  # noqa: E731
    assert sorted(map(key, eb)) == sorted(map(key, ea))
    alpha = {key(r): r["alpha"] for r in ea}
    assert all(r["alpha"] == pytest.approx(alpha[key(r)], abs=1e-6) for r in eb)
    la, lb = (step_records(r / "arms" / "uniform" / "train_log.jsonl") for r in (a, b))
    assert [r["step"] for r in lb] == list(range(1, len(la) + 1))
    assert [r["loss"] for r in lb] == pytest.approx([r["loss"] for r in la], abs=1e-6)
    wa, wb = ([json.loads(x)["sha256"] for x in (r / "arms" / "uniform" / "weights.jsonl")
               .read_text().splitlines()] for r in (a, b))
    assert wa == wb  # the same weights at every budget, bit for bit
    monkeypatch.setenv("SPECFAIR_CHECKPOINT_S", "-1")
    with pytest.raises(SpecfairError, match="SPECFAIR_CHECKPOINT_S"):
        run_study(StudyConfig.load(cfg), tmp_path / "c")
    assert not (tmp_path / "c").exists()
