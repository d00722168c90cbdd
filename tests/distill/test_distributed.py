"""Two CPU processes (gloo DDP, launched with ``torchrun``): training finishes, ranks stay in sync.

(``accelerate launch --cpu`` starts a single process unless MPI is set up; torchrun's environment
is what ``Accelerator`` reads, so the trainer code is the same under either launcher.)"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tiny import make_tiny_pair

HERE = Path(__file__).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _launcher() -> list[str] | None:
    try:
        import torch.distributed.run  # noqa: F401
    except ImportError:
        return None
    return [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.parametrize("weighting", ["per-task"])
def test_two_process_gloo(tmp_path, weighting):
    launcher = _launcher()
    if launcher is None:
        pytest.skip("torch.distributed.run not available")
    make_tiny_pair(tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "PYTHONPATH": os.pathsep.join([str(HERE), str(HERE.parent),
                                          os.environ.get("PYTHONPATH", "")])}
    cmd = [*launcher, "--nproc_per_node", "2", "--nnodes", "1", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(HERE / "ddp_worker.py"), str(tmp_path),
           weighting]
    try:
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    except (OSError, PermissionError) as e:  # cannot start processes here
        pytest.skip(f"cannot launch processes: {e}")
    if proc.returncode != 0 and any(m in proc.stderr for m in (
            "Address family not supported", "Operation not permitted",
            "Cannot assign requested address", "gloo is not available")):
        pytest.skip("process groups unavailable in this sandbox")
    assert proc.returncode == 0, proc.stderr[-4000:]
    r0, r1 = (json.loads((tmp_path / f"rank{r}-{weighting}.json").read_text()) for r in (0, 1))
    assert r0["world"] == r1["world"] == 2 and "MULTI_CPU" in r0["distributed_type"]
    assert r0["steps"] == r1["steps"] == 3
    assert r0["params"] == r1["params"]  # DDP kept the replicas identical
    assert r0["alpha_after"] == r1["alpha_after"] and r0["alpha_after"]
    log = [json.loads(x) for x in open(tmp_path / f"out-{weighting}" / "train_log.jsonl")]
    assert [r["step"] for r in log if "loss" in r] == [1, 2, 3]
    # both shards of the responses cache were written (each rank generated its half)
    assert (tmp_path / "responses.jsonl").is_file()
    assert (tmp_path / "responses.rank1.jsonl").is_file()
    ckpt = tmp_path / f"out-{weighting}" / "checkpoints" / "step-000002"
    assert (ckpt / "rng.rank0.safetensors").is_file() and (ckpt / "rng.rank1.json").is_file()
