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
