"""The ``[sources.NAME]`` tables of a suite TOML: check each table's options, expand
``languages``, find the file (or dataset), read it with its format's reader and sample it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from specfair.errors import SpecfairError
from specfair.schema import suggest
from specfair.tasks.formats import ALIASES, detect_format, read_prompts
from specfair.tasks.prompt import Prompt
from specfair.tasks.suite import sample_per_task

_SOURCE_KEYS = {
    "format",
    "path",
    "dataset",
    "n",
    "seed",
    "enabled",
    "languages",
    "task",
    "task_map",
    "task_prefix",
    "include",
    "language",
    "split",
    "config",
    "columns",
    "data_files",
    "reference_after",
    "template",
    "source",
    "english",
}
# options passed on to the readers, by format
_READER_KEYS = {
    "spec_bench": {"task", "task_map", "task_prefix", "include"},
    "gsm8k": {"task"},
    "mgsm": {"task", "language", "english"},
    "humaneval": {"task", "template"},
    "jsonl": {"task", "task_map", "task_prefix", "include"},
    "hf": {
        "task",
        "task_map",
        "task_prefix",
        "include",
        "split",
        "config",
        "columns",
        "data_files",
        "reference_after",
    },
}


def expect(value: Any, kind: type | tuple, what: str, origin: str) -> Any:
    if (
        isinstance(value, bool)
        and kind is not bool
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise SpecfairError(f"{origin}: {what} should not be a boolean")
    if not isinstance(value, kind):
        raise SpecfairError(f"{origin}: {what} has the wrong type ({type(value).__name__})")
    return value


def read_sources(
    sources: Mapping[str, Any],
    *,
    origin: str,
    base: Path,
    how: str,
    packaged: bool,
    data_root: str | Path | None,
    seed: int,
) -> tuple[list[Prompt], dict[str, list[str]]]:
    """The prompts of every enabled source, each sampled by its own ``n``, and the names of the
    sources of each task."""
    items: list[Prompt] = []
    task_sources: dict[str, list[str]] = {}
    for src_name, opts in sources.items():
        where = f"{origin}: source {src_name!r}"
        expect(opts, dict, f"source {src_name!r}", origin)
        bad = set(opts) - _SOURCE_KEYS
        if bad:
            raise SpecfairError(f"{where}: unknown option(s) {sorted(bad)}")
        if not opts.get("enabled", True):
            continue
        for sub_name, lang in _expand_languages(src_name, opts, where):
            prompts = _read_source(sub_name, lang, opts, base, how, where, packaged, data_root)
            n = opts.get("n")
            if n is not None:
                expect(n, int, "n", where)
            prompts = sample_per_task(prompts, n, expect(opts.get("seed", seed), int, "seed",
                                                         where))
            for p in prompts:
                names = task_sources.setdefault(p.task, [])
                if sub_name not in names:
                    names.append(sub_name)
            items.extend(prompts)
    return items, task_sources


def _expand_languages(
    src_name: str, opts: Mapping[str, Any], where: str
) -> list[tuple[str, str | None]]:
    """``(source name, language)`` per source a table stands for: one per ``languages`` entry
    (``mgsm`` → ``mgsm_ja``, ``mgsm_zh``), else the table itself."""
    languages = opts.get("languages")
    if languages is not None:
        expect(languages, list, "languages", where)
        return [(f"{src_name}_{lang}", lang) for lang in languages]
    return [(src_name, opts.get("language"))]


def _read_source(
    name: str,
    lang: str | None,
    opts: Mapping[str, Any],
    base: Path,
    how: str,
    where: str,
    packaged: bool,
    data_root: str | Path | None,
) -> list[Prompt]:
    fmt = str(opts.get("format", "auto"))
    target = _source_target(lang, opts, base, how, where, packaged, data_root)
    if "dataset" in opts and fmt == "auto":
        fmt = "hf"
    canonical = ALIASES.get(fmt, fmt)
    if canonical == "auto":
        canonical = detect_format(target)
    if canonical not in _READER_KEYS:
        raise SpecfairError(f"{where}: unknown format {fmt!r}")
    allowed = _READER_KEYS[canonical]
    passed = {
        k
        for k in opts
        if k not in {"format", "path", "dataset", "n", "seed", "enabled", "languages", "source"}
    }
    if bad := passed - allowed:
        raise SpecfairError(f"{where}: option(s) {sorted(bad)} do not apply to format {canonical}")
    kwargs: dict[str, Any] = {k: opts[k] for k in passed}
    if canonical == "mgsm" and lang is not None:
        kwargs["language"] = lang
    if lang is not None and "task" in kwargs and "{lang}" in str(kwargs["task"]):
        kwargs["task"] = str(kwargs["task"]).replace("{lang}", lang)
    source = str(opts.get("source", name))
    prompts = read_prompts(target, canonical, source=source, **kwargs)
    if "include" in kwargs:
        _check_include(kwargs, prompts, target, canonical, source, where)
    return prompts


def _source_target(
    lang: str | None,
    opts: Mapping[str, Any],
    base: Path,
    how: str,
    where: str,
    packaged: bool,
    data_root: str | Path | None,
) -> str | Path:
    """The source's dataset id, or its file with ``{lang}`` and ``{data_root}`` filled in and
    resolved against ``base`` (which must exist)."""
    if "dataset" in opts:  # a hub id, not a path
        return str(opts["dataset"])
    if "path" not in opts:
        raise SpecfairError(f"{where}: give a path (or a dataset id for format hf)")
    raw = str(expect(opts["path"], str, "path", where))
    raw = raw.replace("{lang}", lang or "{lang}").replace("{data_root}", str(base))
    if "{lang}" in raw:
        raise SpecfairError(f"{where}: path has {{lang}} but no languages/language is given")
    target = (base / raw).resolve() if not Path(raw).is_absolute() else Path(raw)
    if not target.exists():
        hint = " (run from the project root, or pass data_root)" if packaged else ""
        if data_root is None and not packaged:
            hint = " (or pass data_root)"
        raise SpecfairError(
            f"{where}: file not found: {target} — relative paths resolve against {how}{hint}"
        )
    return target


def _check_include(kwargs: dict, prompts: list, target, fmt: str, source: str,
                   where: str) -> None:
    """Refuse an ``include`` entry that matches no category of the source."""
    include = expect(kwargs["include"], list, "include", where)
    plain = {k: v for k, v in kwargs.items() if k not in ("include", "task", "task_map",
                                                          "task_prefix")}
    try:
        categories = {p.task for p in read_prompts(target, fmt, source=source, **plain)}
    except SpecfairError:  # rows without a category: only an empty result can be told
        if not prompts:
            raise SpecfairError(f"{where}: include {include} matches no row of {target}"
                                ) from None
        return
    for c in include:
        if c not in categories:
            raise SpecfairError(f"{where}: include entry {c!r} matches no category of "
                                f"{target}{suggest(c, categories)}")
