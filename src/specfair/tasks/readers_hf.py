"""Reader for Hugging Face datasets (hub ids, ``save_to_disk`` directories, data-files
directories), via the ``datasets`` package. Options: see :mod:`specfair.tasks.readers_common`."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from specfair.errors import SpecfairError
from specfair.tasks.prompt import Prompt
from specfair.tasks.readers_common import (
    check_unique_ids,
    is_included,
    join_reference,
    map_task,
    plain_number,
)

_FIELDS = ("prompt", "task", "id", "reference")


def read_hf(
    dataset: str | Path,
    *,
    split: str | None = None,
    config: str | None = None,
    columns: Mapping[str, str] | None = None,
    source: str | None = None,
    task: str | None = None,
    task_map: Mapping[str, str] | None = None,
    task_prefix: str = "",
    include: Sequence[str] | None = None,
    data_files: Any = None,
    reference_after: str | None = None,
) -> list[Prompt]:
    """A Hugging Face dataset: a hub id (needs internet or the HF cache), a directory written by
    ``Dataset.save_to_disk``, or a local data-files directory, via ``datasets``.

    ``columns`` maps our fields to the dataset's columns: ``prompt`` (required; str or list of
    str), ``task`` (category column), ``id``, ``reference``; unmapped fields default to
    columns of the same name when present. ``reference_after`` keeps only the text after this
    marker in the reference (``"####"`` for GSM8K's ``answer``)."""
    ds, split = _load_split(dataset, split=split, config=config, data_files=data_files)
    name = str(dataset)
    local = Path(dataset)
    cols = _column_map(ds, columns, name, task)
    source = source or re.sub(r"[^A-Za-z0-9_.-]+", "_", local.name if local.exists() else name)
    out: list[Prompt] = []
    for row, rec in enumerate(ds):
        where = f"{name}[{split or 'all'}] row {row}"
        text = rec[cols["prompt"]]
        turns = (text,) if isinstance(text, str) else tuple(text or ())
        if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise SpecfairError(f"{where}: column {cols['prompt']!r} is empty or not text")
        category = rec[cols["task"]] if "task" in cols else None
        if not is_included(category, include):
            continue
        ref = join_reference(rec[cols["reference"]]) if "reference" in cols else None
        if ref is not None and reference_after:
            ref = plain_number(ref.rsplit(reference_after, 1)[-1])
        pid = rec[cols["id"]] if "id" in cols else row
        out.append(
            Prompt(
                id=f"{source}-{pid}",
                task=map_task(
                    category, task=task, task_map=task_map, task_prefix=task_prefix, where=where
                ),
                turns=turns,
                reference=ref,
                source=source,
            )
        )
    return check_unique_ids(out, name)


def _load_split(
    dataset: str | Path, *, split: str | None, config: str | None, data_files: Any
) -> tuple[Any, str | None]:
    """The dataset's rows to read and the split's name (the only split when none is given)."""
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a dependency
        raise SpecfairError(f"the 'datasets' package is needed to read {dataset}: {e}") from None

    name = str(dataset)
    local = Path(dataset)
    try:
        if local.is_dir() and (
            (local / "dataset_info.json").exists() or (local / "dataset_dict.json").exists()
        ):
            ds = datasets.load_from_disk(str(local))
        else:
            ds = datasets.load_dataset(name, config, split=split, data_files=data_files)
    except SpecfairError:
        raise
    except Exception as e:  # datasets raises many kinds; all mean "cannot load this"
        raise SpecfairError(f"cannot load dataset {name!r}: {type(e).__name__}: {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        if split is None:
            if len(ds) != 1:
                raise SpecfairError(
                    f"dataset {name!r} has splits {sorted(ds)}; choose one with split="
                )
            split = next(iter(ds))
        if split not in ds:
            raise SpecfairError(f"dataset {name!r} has no split {split!r} (has {sorted(ds)})")
        ds = ds[split]
    elif split is not None and not isinstance(ds, datasets.Dataset):  # pragma: no cover
        raise SpecfairError(f"dataset {name!r}: unexpected type {type(ds).__name__}")
    return ds, split


def _column_map(
    ds: Any, columns: Mapping[str, str] | None, name: str, task: str | None
) -> dict[str, str]:
    """``{field: column}`` for our fields, checked against the dataset's columns."""
    cols = dict(columns or {})
    have = set(ds.column_names)
    for field in _FIELDS:
        if field not in cols and field in have:
            cols[field] = field
    for field, col in cols.items():
        if field not in _FIELDS:
            raise SpecfairError(
                f"dataset {name!r}: unknown field {field!r} in columns (use prompt, task, id, "
                "reference)"
            )
        if col not in have:
            raise SpecfairError(
                f"dataset {name!r}: no column {col!r} for {field} (columns: {sorted(have)})"
            )
    if "prompt" not in cols:
        raise SpecfairError(
            f"dataset {name!r}: say which column is the prompt (columns: {sorted(have)})"
        )
    if task is None and "task" not in cols:
        raise SpecfairError(f"dataset {name!r}: give a task label or a task column")
    return cols
