"""Readers for upstream prompt formats. Each returns a list of :class:`Prompt`.

Common keyword options:

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
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from specfair.errors import SpecfairError
from specfair.tasks.prompt import Prompt

HUMANEVAL_TEMPLATE = "Complete this Python function:\n```python\n{prompt}```"

# ----------------------------------------------------------------------------- helpers


def _check_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.exists():
        raise SpecfairError(f"prompt file not found: {path}")
    if not path.is_file():
        raise SpecfairError(f"not a file: {path}")
    return path


def _open_text(path: Path):
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".gz", ".jsonl", ".json", ".tsv"):
        if name.endswith(ext):
            name = name[: -len(ext)]
    return name


def default_source(path: str | Path) -> str:
    """A short source name from a file name: ``mt_bench/question.jsonl`` → ``mt_bench``,
    ``gsm8k/test.jsonl`` → ``gsm8k_test``, ``mgsm/mgsm_ja.tsv`` → ``mgsm_ja``."""
    path = Path(path)
    stem = _stem(path)
    parent = path.resolve().parent.name or "data"
    if stem.lower() in {"question", "questions", "prompts", "data"}:
        return parent
    if stem.lower() in {"train", "test", "validation", "valid", "dev"}:
        return f"{parent}_{stem}"
    return stem


def _read_jsonl(path: str | Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (``"file:line"``, object) for each non-blank line."""
    path = _check_file(path)
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as e:
                    raise SpecfairError(f"{where}: invalid JSON ({e.msg})") from None
                if not isinstance(obj, dict):
                    raise SpecfairError(
                        f"{where}: expected a JSON object, got {type(obj).__name__}"
                    )
                yield where, obj
    except (UnicodeDecodeError, OSError, EOFError) as e:  # bad gzip, not UTF-8, ...
        raise SpecfairError(f"{path}: cannot read ({e})") from None


def _field(obj: Mapping[str, Any], key: str, where: str, kind: type | tuple = str) -> Any:
    if key not in obj or obj[key] is None:
        raise SpecfairError(f"{where}: missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind):
        want = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SpecfairError(f"{where}: field {key!r} should be {want}, got {type(value).__name__}")
    if isinstance(value, str) and not value.strip():
        raise SpecfairError(f"{where}: field {key!r} is empty")
    return value


def _map_task(
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


def _keep(category: str | None, include: Sequence[str] | None) -> bool:
    return include is None or category in include


def _reference(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return "\n\n".join(str(v) for v in value) if value else None
    return str(value)


def _number(text: str) -> str:
    """``"1,234"`` → ``"1234"`` (MGSM and GSM8K write thousands with commas)."""
    return text.strip().replace(",", "")


def _check_ids(prompts: list[Prompt], where: str) -> list[Prompt]:
    seen: set[str] = set()
    for p in prompts:
        if p.id in seen:
            raise SpecfairError(f"{where}: duplicate prompt id {p.id!r}")
        seen.add(p.id)
    return prompts


# ----------------------------------------------------------------------------- readers


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
    for where, obj in _read_jsonl(path):
        qid = _field(obj, "question_id", where, (int, str))
        turns = _field(obj, "turns", where, list)
        if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise SpecfairError(f"{where}: field 'turns' must be a non-empty list of strings")
        category = obj.get("category")
        if not _keep(category, include):
            continue
        out.append(
            Prompt(
                id=f"{source}-{qid}",
                task=_map_task(
                    category, task=task, task_map=task_map, task_prefix=task_prefix, where=where
                ),
                turns=tuple(turns),
                reference=_reference(obj.get("reference")),
                source=source,
            )
        )
    return _check_ids(out, str(path))


def read_gsm8k(path: str | Path, *, source: str | None = None, task: str = "gsm8k") -> list[Prompt]:
    """GSM8K JSONL: ``question``, ``answer`` (worked solution ending ``#### <number>``); the
    reference is the final number without thousands separators. Ids ``{source}-{row}``
    (row counted from 0 over non-blank lines)."""
    source = source or default_source(path)
    out: list[Prompt] = []
    for row, (where, obj) in enumerate(_read_jsonl(path)):
        question = _field(obj, "question", where)
        answer = _field(obj, "answer", where)
        if "####" not in answer:
            raise SpecfairError(f"{where}: field 'answer' has no '#### <number>' final answer")
        out.append(
            Prompt(
                id=f"{source}-{row}",
                task=task,
                turns=(question,),
                reference=_number(answer.rsplit("####", 1)[1]),
                source=source,
            )
        )
    return out


_MGSM_NAME = re.compile(r"mgsm_([A-Za-z-]+)$")


def _read_tsv(path: Path) -> list[tuple[str, str, str]]:
    """(where, question, number) per non-blank line of an MGSM TSV."""
    rows: list[tuple[str, str, str]] = []
    try:
        with _open_text(path) as f:
            for lineno, line in enumerate(f, 1):
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                where = f"{path}:{lineno}"
                cols = line.split("\t")
                if len(cols) != 2:
                    raise SpecfairError(
                        f"{where}: expected 2 tab-separated columns (question, number), "
                        f"got {len(cols)}"
                    )
                question, number = cols[0].strip(), _number(cols[1])
                if not question:
                    raise SpecfairError(f"{where}: empty question")
                if not re.fullmatch(r"-?\d+(\.\d+)?", number):
                    raise SpecfairError(f"{where}: answer {cols[1]!r} is not a number")
                rows.append((where, question, number))
    except (UnicodeDecodeError, OSError) as e:
        raise SpecfairError(f"{path}: cannot read ({e})") from None
    return rows


def read_mgsm(
    path: str | Path,
    *,
    language: str | None = None,
    source: str | None = None,
    task: str | None = None,
    english: str | Path | bool | None = None,
) -> list[Prompt]:
    """MGSM TSV: ``question<TAB>number`` per line, no header. The language comes from the file
    name ``mgsm_xx.tsv`` unless given; the task defaults to ``mgsm_<language>``.

    MGSM's rows are translations of one another (and ``mgsm_en`` is the first 250 GSM8K test
    problems), so each prompt's split ``group`` is the English question of its row, taken from
    ``english`` (a path; default: ``mgsm_en.tsv`` beside an ``mgsm_xx.tsv`` file, if present;
    ``False``: none).
    All translations of a problem, and its GSM8K original, then share one split."""
    path = _check_file(path)
    if language is None:
        m = _MGSM_NAME.search(_stem(path))
        if not m:
            raise SpecfairError(
                f"{path}: cannot tell the language from the file name (expected mgsm_xx.tsv); "
                "give the language"
            )
        language = m.group(1)
    source = source or f"mgsm_{language}"
    task = task or f"mgsm_{language}"
    rows = _read_tsv(path)
    groups: list[str | None] = [None] * len(rows)
    if english is None or english is True:
        sibling = path.parent / "mgsm_en.tsv"
        auto = _MGSM_NAME.search(_stem(path)) is not None and language != "en"
        english = sibling if auto and sibling.is_file() else False
    if english is not False:
        en_rows = _read_tsv(_check_file(english))
        if len(en_rows) != len(rows):
            raise SpecfairError(
                f"{path}: {len(rows)} rows but the English file {english} has {len(en_rows)}; "
                "MGSM rows must line up (or set english = false)"
            )
        groups = [q for _, q, _ in en_rows]
    return [
        Prompt(
            id=f"{source}-{row}",
            task=task,
            turns=(question,),
            reference=number,
            source=source,
            group=groups[row],
        )
        for row, (_, question, number) in enumerate(rows)
    ]


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
    for where, obj in _read_jsonl(path):
        task_id = str(_field(obj, "task_id", where, (str, int)))
        code = _field(obj, "prompt", where)
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
    return _check_ids(out, str(path))


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
    for row, (where, obj) in enumerate(_read_jsonl(path)):
        key = "prompt" if "prompt" in obj or "turns" not in obj else "turns"
        text = _field(obj, key, where, (str, list))
        turns = (text,) if isinstance(text, str) else tuple(text)
        if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise SpecfairError(f"{where}: field {key!r} must be a string or a list of strings")
        category = obj.get("task")
        if category is not None and not isinstance(category, str):
            raise SpecfairError(f"{where}: field 'task' should be str")
        if task is None and category is None:
            raise SpecfairError(f"{where}: missing field 'task'")
        if not _keep(category, include):
            continue
        pid = obj.get("id")
        out.append(
            Prompt(
                id=str(pid) if pid is not None else f"{source}-{row}",
                task=_map_task(
                    category, task=task, task_map=task_map, task_prefix=task_prefix, where=where
                ),
                turns=turns,
                reference=_reference(obj.get("reference")),
                source=source,
            )
        )
    return _check_ids(out, str(path))


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

    cols = dict(columns or {})
    have = set(ds.column_names)
    for field in ("prompt", "task", "id", "reference"):
        if field not in cols and field in have:
            cols[field] = field
    for field, col in cols.items():
        if field not in {"prompt", "task", "id", "reference"}:
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

    source = source or re.sub(r"[^A-Za-z0-9_.-]+", "_", local.name if local.exists() else name)
    out: list[Prompt] = []
    for row, rec in enumerate(ds):
        where = f"{name}[{split or 'all'}] row {row}"
        text = rec[cols["prompt"]]
        turns = (text,) if isinstance(text, str) else tuple(text or ())
        if not turns or not all(isinstance(t, str) and t.strip() for t in turns):
            raise SpecfairError(f"{where}: column {cols['prompt']!r} is empty or not text")
        category = rec[cols["task"]] if "task" in cols else None
        if not _keep(category, include):
            continue
        ref = _reference(rec[cols["reference"]]) if "reference" in cols else None
        if ref is not None and reference_after:
            ref = _number(ref.rsplit(reference_after, 1)[-1])
        pid = rec[cols["id"]] if "id" in cols else row
        out.append(
            Prompt(
                id=f"{source}-{pid}",
                task=_map_task(
                    category, task=task, task_map=task_map, task_prefix=task_prefix, where=where
                ),
                turns=turns,
                reference=ref,
                source=source,
            )
        )
    return _check_ids(out, name)


# ----------------------------------------------------------------------------- dispatch

FORMATS = ("spec_bench", "gsm8k", "mgsm", "humaneval", "jsonl", "hf")
_ALIASES = {
    "mt_bench": "spec_bench",
    "mt-bench": "spec_bench",
    "spec-bench": "spec_bench",
    "vicuna_bench": "spec_bench",
    "questions": "spec_bench",
    "tsv": "mgsm",
    "generic": "jsonl",
    "huggingface": "hf",
    "datasets": "hf",
}


def detect_format(path: str | Path) -> str:
    """Guess a file's format from its name and its first record's keys."""
    path = Path(path)
    if path.is_dir():
        return "hf"
    if _stem(path).lower().startswith("mgsm") or path.name.endswith(".tsv"):
        return "mgsm"
    for where, obj in _read_jsonl(path):
        if "question_id" in obj and "turns" in obj:
            return "spec_bench"
        if "question" in obj and "answer" in obj:
            return "gsm8k"
        if "task_id" in obj and "prompt" in obj:
            return "humaneval"
        if "prompt" in obj or "turns" in obj:
            return "jsonl"
        raise SpecfairError(
            f"{where}: cannot tell the format from the fields {sorted(obj)}; give the format"
        )
    raise SpecfairError(f"{path}: empty file")


def read_prompts(path: str | Path, format: str = "auto", **options: Any) -> list[Prompt]:
    """Read a prompt file (or dataset) in ``format`` (``auto`` guesses), passing ``options`` to
    the reader."""
    fmt = _ALIASES.get(format, format)
    if fmt == "auto":
        if not Path(path).exists():
            raise SpecfairError(f"prompt file not found: {path}")
        fmt = detect_format(path)
    readers = {
        "spec_bench": read_spec_bench,
        "gsm8k": read_gsm8k,
        "mgsm": read_mgsm,
        "humaneval": read_humaneval,
        "jsonl": read_jsonl,
        "hf": read_hf,
    }
    if fmt not in readers:
        raise SpecfairError(f"unknown prompt format {format!r} (known: auto, {', '.join(FORMATS)})")
    try:
        return readers[fmt](path, **options)
    except TypeError as e:
        if "unexpected keyword argument" in str(e):
            raise SpecfairError(f"{path}: option not valid for format {fmt!r}: {e}") from None
        raise
