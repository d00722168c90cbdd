import os
import time

import pytest

from specfair.atomic import STALE_AFTER_S, atomic_dir


def test_atomic_dir_replaces_on_success_and_keeps_old_on_error(tmp_path):
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("one")
    assert (out / "a.txt").read_text() == "one"
    with pytest.raises(RuntimeError):
        with atomic_dir(out) as tmp:
            (tmp / "a.txt").write_text("two")
            raise RuntimeError("disk full")
    assert (out / "a.txt").read_text() == "one"
    with atomic_dir(out) as tmp:
        (tmp / "b.txt").write_text("three")
    assert sorted(p.name for p in out.iterdir()) == ["b.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_atomic_dir_removes_stale_temporaries_only(tmp_path):
    old, fresh = tmp_path / ".out.tmpdead", tmp_path / ".out.tmpbusy"
    old.mkdir()
    fresh.mkdir()
    past = time.time() - STALE_AFTER_S - 10
    os.utime(old, (past, past))
    with atomic_dir(tmp_path / "out"):
        pass
    assert not old.exists() and fresh.exists()


_REWRITER = """
import sys
from pathlib import Path
from specfair.atomic import atomic_dir
out, i = Path(sys.argv[1]), 0
while True:
    i += 1
    with atomic_dir(out) as tmp:
        for k in range(20):  # an old directory of some size: its removal takes a while
            (tmp / f"part{k}").write_text(str(i) * 1000)
        (tmp / "whole").write_text(str(i))
"""


def test_atomic_dir_killed_at_any_moment_leaves_a_whole_directory(tmp_path):
    """SIGKILL a process rewriting a directory in a loop at random moments: the old directory
    or the new one is always at the path, whole (the swap is one step)."""
    import random
    import signal
    import subprocess
    import sys

    out, rng = tmp_path / "out", random.Random(0)
    for _ in range(12):
        p = subprocess.Popen([sys.executable, "-c", _REWRITER, str(out)])
        deadline = time.time() + 30
        while not (out / "whole").exists() and time.time() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.2))
        p.send_signal(signal.SIGKILL)
        p.wait()
        assert (out / "whole").is_file(), sorted(q.name for q in tmp_path.iterdir())
        assert len(list(out.glob("part*"))) == 20


def test_atomic_dir_two_step_swap_put_back_after_a_kill(tmp_path, monkeypatch):
    """Where the system cannot swap in one step, a kill between the two steps leaves the old
    directory aside; the next write of the path puts it back first (or drops it, if the new
    one made it in)."""
    import specfair.atomic as atomic

    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    with atomic_dir(out) as tmp:
        (tmp / "a.txt").write_text("one")
    with atomic_dir(out) as tmp:  # two steps, not killed
        (tmp / "a.txt").write_text("two")
    assert (out / "a.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    out.rename(tmp_path / ".out.old")  # killed between the steps
    with pytest.raises(RuntimeError), atomic_dir(out):
        raise RuntimeError("failed")
    assert (out / "a.txt").read_text() == "two"  # put back
    (tmp_path / ".out.old").mkdir()  # killed after the new one made it in
    with pytest.raises(RuntimeError), atomic_dir(out):
        raise RuntimeError("failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
