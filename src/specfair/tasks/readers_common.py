"""What the prompt readers share: opening files, JSONL rows, field checks, task labels.

Common keyword options of the readers:

- ``source``: a name for the source; prompt ids are ``f"{source}-{native id}"`` (the generic
  JSONL format keeps its own ``id`` field as is). Default: derived from the file name.
- ``task``: put every prompt under this task label; otherwise the row's category (Spec-Bench /
  MT-bench ``category``, generic ``task`` field) goes through ``task_map`` (``{category:
  task}``), and an unmapped category becomes ``task_prefix + category``.
- ``include``: keep only these categories (before mapping).

Malformed input raises :class:`SpecfairError` naming ``file:line`` and the problem.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from specfair.errors import SpecfairError
from specfair.schema import loads_json
from specfair.tasks.prompt import Prompt

# ----------------------------------------------------------------------------- files


def check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise SpecfairError(f"prompt file not found: {path}")
    if not path.is_file():
        raise SpecfairError(f"not a file: {path}")
    return path


def open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def file_stem(path: Path) -> str:
    name = path.name
    for ext in (".gz", ".jsonl", ".json", ".tsv"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name


def default_source(path: str | Path) -> str:
    """A short source name from a file name: ``mt_bench/question.jsonl`` → ``mt_bench``,
    ``gsm8k/test.jsonl`` → ``gsm8k_test``, ``mgsm/mgsm_ja.tsv`` → ``mgsm_ja``."""
    path = Path(path)
    stem = file_stem(path)
    parent = path.resolve().parent.name or "data"
    if stem.lower() in {"question", "questions", "prompts", "data"}:
        return parent
    if stem.lower() in {"train", "test", "validation", "valid", "dev"}:
        return f"{parent}_{stem}"
    return stem


def iter_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (``"file:line"``, object) for each non-blank line."""
    path = check_file(path)
    try:
        with open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    obj = loads_json(line)
                except ValueError as e:  # not JSON, or nested too deeply
                    raise SpecfairError(f"{where}: invalid JSON ({getattr(e, 'msg', e)})") from None
                if not isinstance(obj, dict):
                    raise SpecfairError(
                        f"{where}: expected a JSON object, got {type(obj).__name__}"
                    )
                yield where, obj
    except (UnicodeDecodeError, OSError, EOFError) as e:  # bad gzip, not UTF-8, ...
        raise SpecfairError(f"{path}: cannot read ({e})") from None


# ----------------------------------------------------------------------------- rows


def required_field(obj: Mapping[str, Any], key: str, where: str, kind: type | tuple = str) -> Any:
    if key not in obj or obj[key] is None:
        raise SpecfairError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SpecfairError(f"{where}: field {key!r} should be {want}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise SpecfairError(f"{where}: field {key!r} is empty")
    return value


def map_task(
    category: str | None,
    *,
    task: str | None,
    task_map: Mapping[str, str] | None,
    task_prefix: str,
    where: str,
) -> str:
    if task:
        return task
    if category is None or not str(category).strip():
        raise SpecfairError(f"{where}: no category/task for this row and no task option given")
    category = str(category)
    if task_map and category in task_map:
        return task_map[category]
    return f"{task_prefix}{category}"


def is_included(category: str | None, include: Sequence[str] | None) -> bool:
    return include is None or category in include


def join_reference(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return "\n\n".join(str(v) for v in value) if value else None
    return str(value)


def plain_number(text: str) -> str:
    """``"1,234"`` → ``"1234"`` (MGSM and GSM8K write thousands with commas)."""
    return text.strip().replace(",", "")


def check_unique_ids(prompts: list[Prompt], where: str) -> list[Prompt]:
    seen: set[str] = set()
    for p in prompts:
        if p.id in seen:
            raise SpecfairError(f"{where}: duplicate prompt id {p.id!r}")
        seen.add(p.id)
    return prompts
