"""Readers for JSONL prompt files: Spec-Bench / MT-bench questions, HumanEval, and the generic
``task`` + ``prompt`` format. Options: see :mod:`specfair.tasks.readers_common`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from specfair.errors import SpecfairError
from specfair.tasks.prompt import Prompt
from specfair.tasks.readers_common import (
    check_unique_ids,
    default_source,
    is_included,
    iter_jsonl,
    join_reference,
    map_task,
    required_field,
)

HUMANEVAL_TEMPLATE = "Complete this Python function:\n```python\n{prompt}```"


def read_spec_bench(
    path: str | Path,
    *,
    source: str | None = None,
    task: str | None = None,
    task_map: Mapping[str, str] | None = None,
    task_prefix: str = "",
    include: Sequence[str] | None = None,
) -> list[Prompt]:
    """Spec-Bench / MT-bench / Vicuna-bench question JSONL: ``question_id``, ``category``,
    ``turns`` (list of str), optional ``reference`` (str or list, joined by blank lines).
    Multi-turn questions keep all their turns. The category is the task unless mapped."""
    source = source or default_source(path)
    out: list[Prompt] = []
    for where, obj in iter_jsonl(path):
        qid = required_field(obj, "question_id", where, (int, str))
        turns = required_field(obj, "turns", where, list)
        if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise SpecfairError(f"{where}: field 'turns' must be a non-empty list of strings")
        category = obj.get("category")
        if not is_included(category, include):
            continue
        out.append(
            Prompt(
                id=f"{source}-{qid}",
                task=map_task(
                    category, task=task, task_map=task_map, task_prefix=task_prefix, where=where
                ),
                turns=tuple(turns),
                reference=join_reference(obj.get("reference")),
                source=source,
            )
        )
    return check_unique_ids(out, str(path))


def read_humaneval(
    path: str | Path,
    *,
    source: str | None = None,
    task: str = "code",
    template: str = HUMANEVAL_TEMPLATE,
) -> list[Prompt]:
    """HumanEval JSONL (or ``.jsonl.gz``): ``task_id``, ``prompt`` (a signature and docstring),
    optional ``canonical_solution`` (kept as the reference). The user message is ``template``
    with ``{prompt}`` filled in. Ids ``{source}-{n}`` from ``HumanEval/n``."""
    source = source or default_source(path)
    out: list[Prompt] = []
    for where, obj in iter_jsonl(path):
        task_id = str(required_field(obj, "task_id", where, (str, int)))
        code = required_field(obj, "prompt", where)
        solution = obj.get("canonical_solution")
        out.append(
            Prompt(
                id=f"{source}-{task_id.rsplit('/', 1)[-1]}",
                task=task,
                turns=(template.format(prompt=code),),
                reference=solution if isinstance(solution, str) else None,
                source=source,
            )
        )
    return check_unique_ids(out, str(path))


def read_jsonl(
    path: str | Path,
    *,
    source: str | None = None,
    task: str | None = None,
    task_map: Mapping[str, str] | None = None,
    task_prefix: str = "",
    include: Sequence[str] | None = None,
) -> list[Prompt]:
    """Generic JSONL: ``task``, ``prompt`` (str, or a list of str for multi-turn; ``turns`` is
    accepted too), optional ``reference`` and ``id`` (default ``{source}-{row}``). A ``task``
    option overrides (and makes optional) the ``task`` field."""
    source = source or default_source(path)
    out: list[Prompt] = []
    for row, (where, obj) in enumerate(iter_jsonl(path)):
        key = "prompt" if "prompt" in obj or "turns" not in obj else "turns"
        text = required_field(obj, key, where, (str, list))
        turns = (text,) if isinstance(text, str) else tuple(text)
        if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise SpecfairError(f"{where}: field {key!r} must be a string or a list of strings")
        category = obj.get("task")
        if category is not None and not isinstance(category, str):
            raise SpecfairError(f"{where}: field 'task' should be str")
        if task is None and category is None:
            raise SpecfairError(f"{where}: missing field 'task'")
        if not is_included(category, include):
            continue
        pid = obj.get("id")
        out.append(
            Prompt(
                id=str(pid) if pid is not None else f"{source}-{row}",
                task=map_task(
                    category, task=task, task_map=task_map, task_prefix=task_prefix, where=where
                ),
                turns=turns,
                reference=join_reference(obj.get("reference")),
                source=source,
            )
        )
    return check_unique_ids(out, str(path))
