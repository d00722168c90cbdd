"""Prompt formats by name: guess a file's format, and read a file in a named format."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from specfair.errors import SpecfairError
from specfair.tasks.prompt import Prompt
from specfair.tasks.readers_common import file_stem, iter_jsonl
from specfair.tasks.readers_hf import read_hf
from specfair.tasks.readers_jsonl import read_humaneval, read_jsonl, read_spec_bench
from specfair.tasks.readers_math import read_gsm8k, read_mgsm

FORMATS = ("spec_bench", "gsm8k", "mgsm", "humaneval", "jsonl", "hf")
ALIASES = {
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
    if file_stem(path).lower().startswith("mgsm") or path.name.endswith(".tsv"):
        return "mgsm"
    for where, obj in iter_jsonl(path):
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
    fmt = ALIASES.get(format, format)
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
