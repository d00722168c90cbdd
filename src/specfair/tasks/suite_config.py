"""Suite TOML: a :class:`Suite` built from sources, sampled per task, split train/test by hash.

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

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from specfair.errors import SpecfairError
from specfair.tasks.split import DEFAULT_TEST_FRACTION
from specfair.tasks.suite import Suite, sample_per_task
from specfair.tasks.suite_sources import expect, read_sources

_SUITE_KEYS = {"name", "seed", "test_fraction", "n_per_task", "data_root", "description", "sources"}


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
    base, how = _base_dir(config, origin, base, packaged, data_root)
    name = str(config.get("name", default_name))
    seed = int(expect(config.get("seed", 0), int, "seed", origin)) if seed is None else seed
    test_fraction = _test_fraction(config, origin, test_fraction)
    if n_per_task is None and "n_per_task" in config:
        n_per_task = int(expect(config["n_per_task"], int, "n_per_task", origin))

    sources = config.get("sources")
    if not sources:
        raise SpecfairError(f"{origin}: no [sources.NAME] tables")
    expect(sources, dict, "sources", origin)
    items, task_sources = read_sources(
        sources,
        origin=origin,
        base=base,
        how=how,
        packaged=packaged,
        data_root=data_root,
        seed=seed,
    )
    if not items:
        raise SpecfairError(f"{origin}: the suite has no prompts")
    items = sample_per_task(items, n_per_task, seed)
    kept = {p.task for p in items}
    task_sources = {t: s for t, s in task_sources.items() if t in kept}
    suite = Suite(name, items, test_fraction, seed, origin=origin, sources=task_sources)
    suite.check()
    return suite


def _base_dir(
    config: Mapping[str, Any],
    origin: str,
    base: Path | None,
    packaged: bool,
    data_root: str | Path | None,
) -> tuple[Path, str]:
    """The directory relative source paths resolve against, and how it was chosen (in words,
    for the file-not-found message)."""
    base = Path.cwd() if base is None else base
    how = "the current directory" if packaged else "the suite file's directory"
    if data_root is not None:
        base, how = Path(data_root).resolve(), f"data_root {data_root}"
    elif "data_root" in config:
        root = Path(expect(config["data_root"], str, "data_root", origin))
        base, how = (base / root).resolve(), f"data_root {config['data_root']!r} ({how})"
    return base, how


def _test_fraction(config: Mapping[str, Any], origin: str, test_fraction: float | None) -> float:
    if test_fraction is None:
        test_fraction = float(
            expect(
                config.get("test_fraction", DEFAULT_TEST_FRACTION),
                (int, float),
                "test_fraction",
                origin,
            )
        )
    if not 0.0 <= test_fraction <= 1.0:
        raise SpecfairError(f"{origin}: test_fraction must be within [0, 1]")
    return test_fraction
