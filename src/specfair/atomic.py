"""Write a directory all at once: nothing half-written is ever left where a finished one is
expected (a crash, a full disk or Ctrl-C leaves the old directory, or none)."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

STALE_AFTER_S = 3600  # a temporary directory untouched this long belongs to a dead writer


@contextmanager
def atomic_dir(out: str | Path, mode: int = 0o755) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``out``; when the block succeeds it replaces
    ``out`` (an existing ``out`` is removed first), otherwise it is deleted. Temporary
    directories of ``out`` left by a killed process (older than ``STALE_AFTER_S``) are removed
    first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for stale in out.parent.glob(f".{out.name}.tmp*"):  # left by a killed writer
        try:
            if time.time() - stale.stat().st_mtime > STALE_AFTER_S:
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(mode)
        if out.exists():
            shutil.rmtree(out)
        tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
