"""Readers for the math word-problem sets: GSM8K (JSONL) and MGSM (one TSV per language)."""

from __future__ import annotations

import re
from pathlib import Path

from specfair.errors import SpecfairError
from specfair.tasks.prompt import Prompt
from specfair.tasks.readers_common import (
    check_file,
    default_source,
    file_stem,
    iter_jsonl,
    open_text,
    plain_number,
    required_field,
)


def read_gsm8k(path: str | Path, *, source: str | None = None, task: str = "gsm8k") -> list[Prompt]:
    """GSM8K JSONL: ``question``, ``answer`` (worked solution ending ``#### <number>``); the
    reference is the final number without thousands separators. Ids ``{source}-{row}``
    (row counted from 0 over non-blank lines)."""
    source = source or default_source(path)
    out: list[Prompt] = []
    for row, (where, obj) in enumerate(iter_jsonl(path)):
        question = required_field(obj, "question", where)
        answer = required_field(obj, "answer", where)
        if "####" not in answer:
            raise SpecfairError(f"{where}: field 'answer' has no '#### <number>' final answer")
        out.append(
            Prompt(
                id=f"{source}-{row}",
                task=task,
                turns=(question,),
                reference=plain_number(answer.rsplit("####", 1)[1]),
                source=source,
            )
        )
    return out


_MGSM_NAME = re.compile(r"mgsm_([A-Za-z-]+)$")


def _read_tsv(path: Path) -> list[tuple[str, str, str]]:
    """(where, question, number) per non-blank line of an MGSM TSV."""
    rows: list[tuple[str, str, str]] = []
    try:
        with open_text(path) as f:
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
                question, number = cols[0].strip(), plain_number(cols[1])
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
    path = check_file(path)
    if language is None:
        m = _MGSM_NAME.search(file_stem(path))
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
        auto = _MGSM_NAME.search(file_stem(path)) is not None and language != "en"
        english = sibling if auto and sibling.is_file() else False
    if english is not False:
        en_rows = _read_tsv(check_file(english))
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
