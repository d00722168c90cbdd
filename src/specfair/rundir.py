"""Output directories of ``bench``, ``estimate``, ``distill`` and ``experiment``: checked before
any work, locked against a second writer, and bound to one set of run settings.

* :func:`check_out_dir` — before models load: ``--out`` is not a file and is writable. Creates
  nothing. :func:`check_out_files`: no directory where a command writes a file.
* :func:`dir_lock` — one writer per directory. ``OUT/.specfair.lock`` holds the writer's pid
  and command line under an exclusive ``flock``; a second writer is refused at once with a
  message naming the first; a lock file that is a symlink (or a hard link) is refused, never
  written through. The kernel drops the lock when its process dies (even by SIGKILL),
  so a lock file left by a dead process is simply taken over. Removed on exit.
* :func:`run_settings` / :func:`check_settings` — every record carries a ``settings`` block
  (target, drafter, dtype, decoding settings, suite and its data hash, specfair version); a
  rerun into a directory written with other settings is refused, naming the setting.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import stat
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from specfair import __version__
from specfair.atomic import open_nofollow
from specfair.errors import SpecfairError
from specfair.schema import loads_json

LOCK_FILE = ".specfair.lock"
# recorded for provenance but not compared: a rerun after an upgrade may resume
NOT_COMPARED = ("specfair",)

# ---------------------------------------------------------------------------- the directory


def check_out_dir(out: str | Path, flag: str = "--out") -> Path:
    """Refuse an output directory that is empty, an existing file, a broken symlink (dangling
    or a loop), holds a lock file that is not a file, or cannot be written (checked on the
    nearest existing ancestor, by creating and removing a probe file there)."""
    if not str(out).strip():
        raise SpecfairError(f"{flag} is empty; give a directory")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SpecfairError(f"{flag} {out} is an existing file, not a directory")
    base = out
    while not base.exists():
        _check_link(base, out, flag)
        if base.parent == base:
            break
        base = base.parent
    if not base.is_dir():
        raise SpecfairError(f"{flag} {out}: {base} is a file, not a directory")
    lock = out / LOCK_FILE
    if lock.is_symlink() or (lock.exists() and not lock.is_file()):
        what = " (a symlink)" if lock.is_symlink() else ""
        raise SpecfairError(f"{flag} {out}: {lock} is not a regular file{what}; remove it (a "
                            "lock file is only ever a file that specfair writes)")
    if out.is_dir():  # a file symlink is replaced by every write (specfair.atomic), but a
        for here, dirs, _ in os.walk(out):  # directory symlink would send new files elsewhere
            for d in dirs:
                if (Path(here) / d).is_symlink():
                    raise SpecfairError(f"{flag} {out}: {Path(here) / d} is a symlink to a "
                                        "directory; specfair writes only into real "
                                        "directories of a run (remove the link)")
    try:
        with tempfile.TemporaryFile(dir=base, prefix=".specfair-probe"):
            pass
    except OSError as e:
        raise SpecfairError(f"{flag} {out}: cannot write in {base} ({e.strerror or e})") from None
    return out


def check_out_files(out: Path, names: Iterable[str], flag: str = "--out") -> None:
    """Before any work: each file a command writes into ``out`` (``names``, relative paths) is
    absent, a regular file or a symlink (which :mod:`specfair.atomic` replaces or refuses,
    never follows), not a directory or a device, so that no write at the end of a long run
    fails on it."""
    for name in names:
        p = Path(out) / name
        if not p.is_symlink() and p.exists() and not p.is_file():
            what = "a directory" if p.is_dir() else "not a regular file"
            raise SpecfairError(f"{flag} {out}: {p} is {what}, where a file is written; move "
                                "it away or give another directory")


def _check_link(path: Path, out: Path, flag: str) -> None:
    """``path`` does not exist: refuse it if it is a symlink (to nowhere, or a loop)."""
    if not path.is_symlink():
        return
    try:
        path.stat()
        loop = False
    except OSError as e:
        loop = e.errno == errno.ELOOP
    why = "a symlink loop" if loop else f"a symlink to {os.readlink(path)}, which does not exist"
    where = f"{flag} {out}" if path == out else f"{flag} {out}: {path}"
    raise SpecfairError(f"{where} is {why}; remove it or give another directory")


def _holder(fd: int) -> str:
    try:
        info = loads_json(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        info = {}
    if not isinstance(info, dict):
        info = {}
    if not info.get("pid"):
        return "another specfair process"
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.get("started", 0)))
    return f"specfair process {info['pid']} ({info.get('command', '?')}, since {since})"


@contextmanager
def dir_lock(out: str | Path, command: str | None = None) -> Iterator[Path]:
    """Create ``out`` and hold its writer lock for the block; refuse if another process holds
    it. Directories created here that are still empty at the end (the run failed before writing
    anything, e.g. a model that does not load) are removed again."""
    out = Path(out)
    created = [p for p in (out, *out.parents) if not p.exists()]
    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    while True:
        try:  # never through a symlink: the lock's JSON must not overwrite another file
            fd = open_nofollow(path, os.O_RDWR | os.O_CREAT | os.O_NONBLOCK)
        except OSError as e:
            raise SpecfairError(f"cannot open the lock file {path} ({e.strerror or e}); "
                                "remove it if it is not a file") from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink > 1:
            os.close(fd)
            why = "a hard link to another file" if st.st_nlink > 1 else "not a regular file"
            raise SpecfairError(f"the lock file {path} is {why}; remove it (a lock file is "
                                "only ever a file that specfair writes)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = _holder(fd)
            os.close(fd)
            raise SpecfairError(
                f"{out} is in use by {who}; wait for it to finish or stop it") from None
        try:  # the previous holder may have removed the file between our open and flock
            if os.fstat(fd).st_ino == os.stat(path).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    info = {"pid": os.getpid(), "command": command or " ".join(["specfair", *sys.argv[1:]]),
            "started": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(info).encode(), 0)
    try:
        yield out
    finally:
        try:
            path.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)
        _remove_if_empty(created)


def _remove_if_empty(dirs: list[Path]) -> None:
    """Remove ``dirs`` (innermost first) while they are empty."""
    for d in dirs:
        try:
            d.rmdir()
        except OSError:
            return


# ---------------------------------------------------------------------------- settings


def run_settings(**settings) -> dict:
    """The settings block of a run's records: the given settings plus the specfair version."""
    return {**settings, "specfair": __version__}


def check_settings(path: str | Path, records: Iterable[dict], settings: dict) -> None:
    """Refuse to add records made with ``settings`` to ``path`` whose ``records`` were made
    with other ones. Records without a ``settings`` block (older files) are compared on their
    top-level fields of the same names."""
    for r in records:
        old = r.get("settings", r)
        for k, v in settings.items():
            if k in NOT_COMPARED or k not in old or old[k] == v:
                continue
            raise SpecfairError(
                f"{path} was written with {k}={old[k]!r}, this run uses {k}={v!r}; "
                "use another output directory (or delete it)"
            )
