"""Crash-safe JSONL append/read and strict JSON writing for the measure records."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from specfair.atomic import open_append, open_nofollow, write_text
from specfair.errors import SpecfairError
from specfair.schema import loads_json, read_json  # noqa: F401  (read_json: the one reader)


def notice(message: str) -> None:
    """A plain one-line notice on stderr (no warning category, no source line)."""
    print(f"notice: {message}", file=sys.stderr, flush=True)


def read_jsonl(path: str | Path, *, repair: bool = False) -> list[dict]:
    """Read a JSONL file written by :func:`append_jsonl`.

    A last line that is incomplete (a crash mid-write: no newline or unparsable) is ignored
    with a notice on stderr; with ``repair=True`` the file is also truncated back to the last
    complete line so that later appends stay valid. An unparsable line *before* the last one is a
    :class:`SpecfairError` (the file was edited or corrupted, not merely cut short).
    """
    path = Path(path)
    if not path.exists():
        return []
    data = path.read_bytes()
    records: list[dict] = []
    good_end = 0  # byte offset just after the last good line
    pos = 0
    lines = data.split(b"\n")
    last_nonempty = max((i for i, raw in enumerate(lines) if raw.strip()), default=-1)
    for i, raw in enumerate(lines):
        is_last = i == last_nonempty
        has_newline = i < len(lines) - 1
        end = pos + len(raw) + (1 if has_newline else 0)
        if raw.strip():
            try:
                rec = loads_json(raw)  # nested too deeply: a ValueError too
                if not isinstance(rec, dict):
                    raise ValueError("not an object")
                if not has_newline and repair:  # complete JSON cut before its newline
                    with open_append(path, binary=True) as f:
                        f.write(b"\n")
                        f.flush()
                        os.fsync(f.fileno())
                records.append(rec)
            except ValueError as e:
                if not is_last:
                    raise SpecfairError(f"{path}: line {i + 1} is not valid JSON ({e})") from e
                notice(f"{path}: ignoring an incomplete last line ({len(raw)} bytes), "
                       "probably left by an interrupted run")
                if repair:
                    with os.fdopen(open_nofollow(path, os.O_WRONLY), "wb") as f:
                        f.truncate(good_end)
                        f.flush()
                        os.fsync(f.fileno())
                break
        good_end = end
        pos = end
    return records



def read_records(src: str | Path | Iterable[dict]) -> tuple[list[dict], str | None]:
    """``(records, source)`` of a JSONL path (``source``: the path) or of records (None)."""
    if isinstance(src, str | Path):
        return read_jsonl(src), str(src)
    return list(src), None

def _clean(obj: Any) -> Any:
    """Replace non-finite floats by None so the output is strict JSON."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_clean(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _clean(obj.item())
    return obj


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one record as a line, then flush and fsync (durable before returning); the
    parent directory is created if needed; a symlink at ``path`` is refused."""
    line = json.dumps(_clean(record), separators=(",", ":"), allow_nan=False) + "\n"
    with open_append(path) as f:
        f.write(line)
        f.flush()
        os.fsync(f.fileno())


def write_json(path: str | Path, obj: Any) -> None:
    """Write strict JSON (nan/inf → null) atomically (:func:`specfair.atomic.write_text`:
    parent directory created if needed, a symlink at ``path`` replaced, never followed)."""
    write_text(path, json.dumps(_clean(obj), indent=2, allow_nan=False) + "\n")
