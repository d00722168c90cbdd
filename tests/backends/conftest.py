import os
import stat
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    """Path of an executable that behaves like llama-server (tests/backends/fake_llama_server.py);
    PIDs of the processes it starts land in ``tmp_path / "pids"``."""
    exe = tmp_path / "llama-server"
    exe.write_text(f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "fake_llama_server.py"}" "$@"\n')
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    piddir = tmp_path / "pids"
    piddir.mkdir()
    monkeypatch.setenv("FAKE_PIDDIR", str(piddir))
    return exe


def started_pids(tmp_path) -> list[int]:
    return [int(p.stem) for p in (tmp_path / "pids").glob("*.pid")]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by a parent that is not us) counts as stopped
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
