"""Task suites: prompts composed from sources, sampled per task, split train/test by hash.

Suite TOML format (all keys optional except each source's ``path``/``dataset``)::

    name = "public"            # default: the file's stem
    seed = 0                   # sampling seed
    test_fraction = 0.3        # share of prompts (by text hash) in the test split
    n_per_task = 60            # cap per task after all sources are merged
    data_root = "."            # base for relative source paths (see below)

    [sources.mt_bench]         # a source; its name prefixes prompt ids ("mt_bench-81")
    format = "spec_bench"      # auto|spec_bench (mt_bench)|gsm8k|mgsm|humaneval|jsonl|hf
    path = "data/mt_bench/question.jsonl"
    task = "mt_bench"          # every prompt in one task; or map categories:
    # task_map = { coding = "code", math = "math" }   # category -> task
    # task_prefix = "mt_"      # unmapped category c -> task "mt_c"
    # include = ["writing", "coding"]                 # keep only these categories
    n = 40                     # sample at most n prompts per task from this source
    # seed = 1                 # per-source sampling seed (default: the suite's)
    # enabled = false          # skip this source

    [sources.mgsm]
    format = "mgsm"
    path = "data/mgsm/mgsm_{lang}.tsv"
    languages = ["ja", "zh"]   # expands to sources mgsm_ja, mgsm_zh (tasks mgsm_ja, mgsm_zh)

    [sources.gsm8k_hf]
    format = "hf"
    dataset = "openai/gsm8k"   # hub id (not a path); or path = a local dataset directory
    config = "main"
    split = "test"
    columns = { prompt = "question", reference = "answer" }
    reference_after = "####"
    task = "gsm8k"

Relative paths (``path``, and ``data_root`` itself) resolve against:

- a TOML file given by path: the directory of that file;
- a packaged config given by name (``load_suite("public")`` → ``specfair/configs/
  suite_public.toml``): the current working directory (so run from the project root);
- in both cases, ``load_suite(..., data_root=DIR)`` overrides the base (the CLI's
  ``--data-root``); ``{data_root}`` in a path is also replaced by it.

Sampling is deterministic: within each (source, task) the ``n`` prompts with the smallest
``sha256(f"{seed}:{split_key(prompt)}")`` are kept, in file order (so translations of one
problem are picked together across MGSM languages). The split is :func:`split_of` of each prompt,
independent of sampling, so a prompt is in the same split in every suite that contains it.
"""

from __future__ import annotations

import hashlib
import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from specfair.errors import SpecfairError
from specfair.schema import suggest
from specfair.tasks.formats import ALIASES, detect_format, read_prompts
from specfair.tasks.prompt import Prompt
from specfair.tasks.readers_jsonl import read_jsonl
from specfair.tasks.split import DEFAULT_TEST_FRACTION, check_no_overlap, split_key, split_of

SplitName = Literal["train", "test", "all"]

_SUITE_KEYS = {"name", "seed", "test_fraction", "n_per_task", "data_root", "description", "sources"}
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


@dataclass
class Suite:
    """A set of prompts with task labels; ``prompts(split)`` gives one split."""

    name: str
    items: list[Prompt]
    test_fraction: float = DEFAULT_TEST_FRACTION
    seed: int = 0
    origin: str = ""
    sources: dict[str, list[str]] = field(default_factory=dict)  # task -> source names

    def __post_init__(self) -> None:
        seen: dict[str, Prompt] = {}
        for p in self.items:
            if p.id in seen:
                raise SpecfairError(
                    f"suite {self.name}: prompt id {p.id!r} occurs twice (sources "
                    f"{seen[p.id].source!r} and {p.source!r}); rename a source"
                )
            seen[p.id] = p
        self._by_id = seen
        if not self.sources:
            for p in self.items:
                names = self.sources.setdefault(p.task, [])
                if p.source not in names:
                    names.append(p.source)

    def split_of(self, prompt: Prompt) -> Literal["train", "test"]:
        return split_of(prompt, self.test_fraction)

    def prompts(self, split: SplitName = "all", tasks: Iterable[str] | None = None) -> list[Prompt]:
        if split not in ("train", "test", "all"):
            raise SpecfairError(f"split must be train, test or all, got {split!r}")
        keep = None if tasks is None else set(tasks)
        if keep is not None and (unknown := keep - set(self.tasks)):
            raise SpecfairError(
                f"suite {self.name} has no task(s) {sorted(unknown)} (tasks: {self.tasks})"
            )
        return [
            p
            for p in self.items
            if (keep is None or p.task in keep) and (split == "all" or self.split_of(p) == split)
        ]

    @property
    def tasks(self) -> list[str]:
        """Task labels in order of first appearance."""
        return list(dict.fromkeys(p.task for p in self.items))

    def by_task(self, split: SplitName = "all") -> dict[str, list[Prompt]]:
        out: dict[str, list[Prompt]] = {t: [] for t in self.tasks}
        for p in self.prompts(split):
            out[p.task].append(p)
        return out

    def get(self, prompt_id: str) -> Prompt:
        try:
            return self._by_id[prompt_id]
        except KeyError:
            raise SpecfairError(f"suite {self.name} has no prompt {prompt_id!r}") from None

    def content_hash(self) -> str:
        """A short hash of the prompts (ids, tasks, turns, references) and the split: two
        suites with the same hash give the same prompts in every split."""
        h = hashlib.sha256(repr(self.test_fraction).encode())
        for p in self.items:
            h.update(json.dumps([p.id, p.task, list(p.turns), p.reference, p.group]).encode())
        return h.hexdigest()[:16]

    def check(self) -> None:
        """Raise if a train prompt's text is also in the test split."""
        check_no_overlap(self.prompts("train"), self.prompts("test"))

    def __len__(self) -> int:
        return len(self.items)


def describe_suite(suite: Suite) -> list[dict[str, Any]]:
    """One row per task: ``{"task", "n_train", "n_test", "sources"}`` (for ``tasks list``)."""
    rows = []
    for task, prompts in suite.by_task("all").items():
        n_test = sum(suite.split_of(p) == "test" for p in prompts)
        rows.append(
            {
                "task": task,
                "n_train": len(prompts) - n_test,
                "n_test": n_test,
                "sources": list(suite.sources.get(task, [])),
            }
        )
    return rows


# ----------------------------------------------------------------------------- sampling


def _rank(seed: int, prompt: Prompt) -> tuple[str, str]:
    key = f"{seed}:{split_key(prompt)}"
    return hashlib.sha256(key.encode()).hexdigest(), prompt.id


def sample_per_task(prompts: list[Prompt], n: int | None, seed: int = 0) -> list[Prompt]:
    """At most ``n`` prompts per task, kept in input order, chosen by a seeded hash of the
    prompt's split key (its text, or group): so the same MGSM problems are picked in every
    language, and the choice does not depend on ids or file order."""
    if n is None:
        return list(prompts)
    if n < 0:
        raise SpecfairError(f"n must be >= 0, got {n}")
    groups: dict[str, list[Prompt]] = {}
    for p in prompts:
        groups.setdefault(p.task, []).append(p)
    keep: set[str] = set()
    for group in groups.values():
        keep.update(p.id for p in sorted(group, key=lambda p: _rank(seed, p))[:n])
    return [p for p in prompts if p.id in keep]


# ----------------------------------------------------------------------------- loading


def _packaged(name: str) -> Any | None:
    configs = resources.files("specfair") / "configs"
    for candidate in (f"suite_{name}.toml", f"{name}.toml"):
        res = configs / candidate
        if res.is_file():
            return res
    return None


def packaged_suites() -> list[str]:
    """Names accepted by :func:`load_suite` besides file paths."""
    configs = resources.files("specfair") / "configs"
    names = ["default"]
    if configs.is_dir():
        names += sorted(
            r.name[len("suite_") : -len(".toml")]
            for r in configs.iterdir()
            if r.name.startswith("suite_") and r.name.endswith(".toml")
        )
    return names


def load_default_suite(
    test_fraction: float = DEFAULT_TEST_FRACTION, n_per_task: int | None = None, seed: int = 0
) -> Suite:
    """The embedded suite: ``specfair/tasks/default/*.jsonl`` (generic JSONL, one file per
    task), usable offline."""
    root = resources.files("specfair.tasks") / "default"
    items: list[Prompt] = []
    with resources.as_file(root) as folder:
        files = sorted(Path(folder).glob("*.jsonl"))
        if not files:
            raise SpecfairError(f"the embedded default suite is missing ({folder})")
        for f in files:
            items.extend(read_jsonl(f, source=f"default/{f.stem}"))
    items = sample_per_task(items, n_per_task, seed)
    suite = Suite("default", items, test_fraction, seed, origin="default")
    suite.check()
    return suite


def load_suite(
    spec: str | Path,
    *,
    data_root: str | Path | None = None,
    test_fraction: float | None = None,
    seed: int | None = None,
    n_per_task: int | None = None,
) -> Suite:
    """Load ``"default"`` (embedded prompts), a packaged suite name (``"public"`` →
    ``specfair/configs/suite_public.toml``), or a suite TOML file.

    ``data_root`` overrides the base directory for the suite's relative paths; ``test_fraction``,
    ``seed`` and ``n_per_task`` override the suite's own values.
    """
    if str(spec) == "default":
        return load_default_suite(
            DEFAULT_TEST_FRACTION if test_fraction is None else test_fraction,
            n_per_task,
            0 if seed is None else seed,
        )
    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise SpecfairError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except OSError as e:
            raise SpecfairError(f"{path}: cannot read ({e.strerror or e})") from None
        origin, base, packaged, default_name = str(path), path.resolve().parent, False, _stem(path)
    elif isinstance(spec, str) and "/" not in spec and (res := _packaged(spec)) is not None:
        text = res.read_text(encoding="utf-8")
        origin, base, packaged, default_name = f"packaged suite {spec!r}", Path.cwd(), True, spec
    else:
        raise SpecfairError(
            f"suite not found: {spec} (give a TOML file or one of: {', '.join(packaged_suites())})"
        )
    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecfairError(f"{origin}: invalid TOML ({e})") from None
    return suite_from_config(
        config,
        origin=origin,
        base=base,
        packaged=packaged,
        default_name=default_name,
        data_root=data_root,
        test_fraction=test_fraction,
        seed=seed,
        n_per_task=n_per_task,
    )


def _stem(path: Path) -> str:
    stem = path.stem
    return stem[len("suite_") :] if stem.startswith("suite_") else stem


def _expect(value: Any, kind: type | tuple, what: str, origin: str) -> Any:
    if (
        isinstance(value, bool)
        and kind is not bool
        and bool not in (kind if isinstance(kind, tuple) else (kind,))
    ):
        raise SpecfairError(f"{origin}: {what} should not be a boolean")
    if not isinstance(value, kind):
        raise SpecfairError(f"{origin}: {what} has the wrong type ({type(value).__name__})")
    return value


def suite_from_config(
    config: Mapping[str, Any],
    *,
    origin: str = "<config>",
    base: Path | None = None,
    packaged: bool = False,
    default_name: str = "suite",
    data_root: str | Path | None = None,
    test_fraction: float | None = None,
    seed: int | None = None,
    n_per_task: int | None = None,
) -> Suite:
    """Build a :class:`Suite` from a parsed suite TOML (see the module docstring)."""
    unknown = set(config) - _SUITE_KEYS
    if unknown:
        raise SpecfairError(
            f"{origin}: unknown key(s) {sorted(unknown)} (known: {sorted(_SUITE_KEYS)})"
        )
    base = Path.cwd() if base is None else base
    how = "the current directory" if packaged else "the suite file's directory"
    if data_root is not None:
        base, how = Path(data_root).resolve(), f"data_root {data_root}"
    elif "data_root" in config:
        root = Path(_expect(config["data_root"], str, "data_root", origin))
        base, how = (base / root).resolve(), f"data_root {config['data_root']!r} ({how})"
    name = str(config.get("name", default_name))
    seed = int(_expect(config.get("seed", 0), int, "seed", origin)) if seed is None else seed
    if test_fraction is None:
        test_fraction = float(
            _expect(
                config.get("test_fraction", DEFAULT_TEST_FRACTION),
                (int, float),
                "test_fraction",
                origin,
            )
        )
    if not 0.0 <= test_fraction <= 1.0:
        raise SpecfairError(f"{origin}: test_fraction must be within [0, 1]")
    if n_per_task is None and "n_per_task" in config:
        n_per_task = int(_expect(config["n_per_task"], int, "n_per_task", origin))

    sources = config.get("sources")
    if not sources:
        raise SpecfairError(f"{origin}: no [sources.NAME] tables")
    _expect(sources, dict, "sources", origin)

    items: list[Prompt] = []
    task_sources: dict[str, list[str]] = {}
    for src_name, opts in sources.items():
        where = f"{origin}: source {src_name!r}"
        _expect(opts, dict, f"source {src_name!r}", origin)
        bad = set(opts) - _SOURCE_KEYS
        if bad:
            raise SpecfairError(f"{where}: unknown option(s) {sorted(bad)}")
        if not opts.get("enabled", True):
            continue
        languages = opts.get("languages")
        if languages is not None:
            _expect(languages, list, "languages", where)
            expanded = [(f"{src_name}_{lang}", lang) for lang in languages]
        else:
            expanded = [(src_name, opts.get("language"))]
        for sub_name, lang in expanded:
            prompts = _read_source(sub_name, lang, opts, base, how, where, packaged, data_root)
            n = opts.get("n")
            if n is not None:
                _expect(n, int, "n", where)
            prompts = sample_per_task(prompts, n, int(opts.get("seed", seed)))
            for p in prompts:
                names = task_sources.setdefault(p.task, [])
                if sub_name not in names:
                    names.append(sub_name)
            items.extend(prompts)
    if not items:
        raise SpecfairError(f"{origin}: the suite has no prompts")
    items = sample_per_task(items, n_per_task, seed)
    kept = {p.task for p in items}
    task_sources = {t: s for t, s in task_sources.items() if t in kept}
    suite = Suite(name, items, test_fraction, seed, origin=origin, sources=task_sources)
    suite.check()
    return suite


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
    if "dataset" in opts:  # a hub id, not a path
        target: str | Path = str(opts["dataset"])
        if fmt == "auto":
            fmt = "hf"
    elif "path" in opts:
        raw = str(_expect(opts["path"], str, "path", where))
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
    else:
        raise SpecfairError(f"{where}: give a path (or a dataset id for format hf)")

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


def _check_include(kwargs: dict, prompts: list, target, fmt: str, source: str,
                   where: str) -> None:
    """Refuse an ``include`` entry that matches no category of the source."""
    include = _expect(kwargs["include"], list, "include", where)
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
