"""A rich progress bar with ETA, as a context manager yielding ``advance(label)``."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager


@contextmanager
def progress_bar(total: int, description: str, *, enabled: bool = True) -> Iterator[Callable]:
    if not enabled or total == 0:
        yield lambda label=None: None
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
