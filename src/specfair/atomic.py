"""Every write into a run or output directory goes through here: nothing half-written is ever
left where a finished file or directory is expected (a crash, a full disk or Ctrl-C leaves the
old one, or none), and nothing is ever written through a symlink.

* :func:`atomic_file` / :func:`write_text` / :func:`write_bytes` — a whole file: written to a
  fresh temporary file next to it, then ``os.replace``-d into place. A symlink at the path is
  replaced itself; its target is never opened.
* :func:`atomic_dir` — a whole directory, the same way: the new one and the old one swap places
  in one step (Linux ``renameat2(RENAME_EXCHANGE)``), so a kill at any moment leaves the old
  directory or the new one at the path, never none (a symlink at the path is removed, its
  target left alone).
* :func:`open_append` / :func:`open_nofollow` — appending to (or truncating) an existing file:
  opened with ``O_NOFOLLOW``, so a symlink there is refused with a :class:`SpecfairError`.
"""

from __future__ import annotations

import ctypes
import errno
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from specfair.errors import SpecfairError

STALE_AFTER_S = 3600  # a temporary directory untouched this long belongs to a dead writer


def _linked(path: Path) -> SpecfairError:
    try:
        where = f" (to {os.readlink(path)})"
    except OSError:
        where = ""
    return SpecfairError(f"{path} is a symlink{where}; specfair never writes through a "
                         "symlink: remove it")


def open_nofollow(path: str | Path, flags: int, mode: int = 0o644) -> int:
    """``os.open(path, flags | O_NOFOLLOW)``: a symlink at ``path`` is refused with one
    :class:`SpecfairError` naming it."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), mode)
    except OSError as e:
        if e.errno == errno.ELOOP or Path(path).is_symlink():
            raise _linked(Path(path)) from None
        raise


def open_append(path: str | Path, binary: bool = False):
    """``path`` opened for appending (created if missing; parent directories too); a symlink
    there is refused."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = open_nofollow(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    return os.fdopen(fd, "ab" if binary else "a", **({} if binary else {"encoding": "utf-8"}))


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary path next to ``path`` (parent directories created); when the
    block succeeds it replaces ``path`` (``os.replace``: a symlink there is replaced, never
    followed), otherwise it is deleted."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`), synced to disk."""
    with atomic_file(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_file`)."""
    write_bytes(path, text.encode("utf-8"))


def real_dir(path: str | Path) -> Path:
    """``path`` as a directory (created if missing, parents too); a symlink there is refused,
    so that what is written into it stays where it is expected."""
    path = Path(path)
    if path.is_symlink():
        raise _linked(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def remove(path: str | Path) -> None:
    """Remove ``path`` if it is there: a file, a directory tree, or a symlink (the link itself,
    never its target)."""
    path = Path(path)
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.exists():
        shutil.rmtree(path)


_AT_FDCWD, _RENAME_EXCHANGE = -100, 2


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2`` with ``RENAME_EXCHANGE``);
    False where this system or file system cannot (the caller then swaps in two steps)."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    if fn(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _aside(out: Path) -> Path:
    return out.parent / f".{out.name}.old"


def _settle(out: Path) -> None:
    """Finish a two-step swap a killed writer left: its old directory put aside and the new
    one not yet in place (the old one goes back), or both in place (the aside one goes)."""
    aside = _aside(out)
    if aside.is_dir() and not aside.is_symlink():
        if out.exists() or out.is_symlink():
            shutil.rmtree(aside, ignore_errors=True)
        else:
            aside.replace(out)


@contextmanager
def atomic_dir(out: str | Path, mode: int = 0o755) -> Iterator[Path]:
    """Yield an empty temporary directory next to ``out``; when the block succeeds it takes
    ``out``'s place, otherwise it is deleted. An existing directory at ``out`` is swapped out
    in one step (:func:`_exchange`) and then removed, so a kill at any moment leaves the old
    ``out`` or the new one, never none; where the system cannot swap in one step, the old one
    is first renamed aside and put back by the next :func:`atomic_dir` of ``out`` if the kill
    came in between. A symlink (or a file) at ``out`` is removed itself, its target left
    alone. Temporary directories of ``out`` left by a killed process (older than
    ``STALE_AFTER_S``) are removed first."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    _settle(out)
    for stale in out.parent.glob(f".{out.name}.tmp*"):  # left by a killed writer
        try:
            if time.time() - stale.lstat().st_mtime > STALE_AFTER_S and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
        except OSError:
            pass
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp", dir=out.parent))
    try:
        yield tmp
        tmp.chmod(mode)
        if out.is_dir() and not out.is_symlink():
            if not _exchange(tmp, out):  # two steps: the old one aside, then the new one in
                out.replace(_aside(out))
                tmp.replace(out)
                shutil.rmtree(_aside(out), ignore_errors=True)
            # else: tmp now holds the old directory, removed below
        else:
            remove(out)
            tmp.replace(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
