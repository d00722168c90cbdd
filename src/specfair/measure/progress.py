"""Progress with an ETA, as a context manager yielding ``advance(label)``.

On a terminal: a rich progress bar. Redirected (a log file, CI, ``nohup``): rich draws nothing
until the end, so a plain line is printed instead every ``interval`` seconds -- done/total,
elapsed, ETA and the last item's label -- from a heartbeat thread, so that a long item (a
batch of answers, a slow forward) never leaves the log silent for longer than ``interval``.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

HEARTBEAT_S = 30.0


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def progress_line(description: str, done: int, total: int, elapsed: float, label: str = "") -> str:
    """``description done/total elapsed ETA`` (ETA from the rate so far; ``?`` before the
    first item)."""
    eta = _clock(elapsed / done * (total - done)) if done else "?"
    tail = f" {label}" if label else ""
    return f"[{description}] {done}/{total} elapsed {_clock(elapsed)} ETA {eta}{tail}"


@contextmanager
def _plain(total: int, description: str, interval: float, stream) -> Iterator[Callable]:
    state = {"done": 0, "label": ""}
    start = time.monotonic()
    stop = threading.Event()

    def say() -> None:
        print(progress_line(description, state["done"], total, time.monotonic() - start,
                            state["label"]), file=stream, flush=True)

    def beat() -> None:
        while not stop.wait(interval):
            say()

    def advance(label: str | None = None) -> None:
        state["done"] += 1
        state["label"] = label or ""

    say()
    thread = threading.Thread(target=beat, daemon=True)
    thread.start()
    try:
        yield advance
    finally:
        stop.set()
        thread.join()
        say()


@contextmanager
def progress_bar(total: int, description: str, *, enabled: bool = True,
                 interval: float = HEARTBEAT_S, stream=None) -> Iterator[Callable]:
    if not enabled or total == 0:
        yield lambda label=None: None
        return
    stream = stream or sys.stdout
    if not stream.isatty():
        with _plain(total, description, interval, stream) as advance:
            yield advance
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[label]}"),
    ) as prog:
        task = prog.add_task(description, total=total, label="")

        def advance(label: str | None = None) -> None:
            prog.update(task, advance=1, label=label or "")

        yield advance


def say(stage: str, msg: str) -> None:
    """A stage's one-line, time-stamped message (``[stage HH:MM:SS] msg``), flushed at once."""
    print(f"[{stage} {time.strftime('%H:%M:%S')}] {msg}", flush=True)
