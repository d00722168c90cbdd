"""Loading a suite by name or path: the embedded ``default`` suite, packaged suite TOMLs
(``specfair/configs/suite_NAME.toml``) and suite TOML files (format:
:mod:`specfair.tasks.suite_config`)."""

from __future__ import annotations

import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from specfair.errors import SpecfairError
from specfair.tasks.prompt import Prompt
from specfair.tasks.readers_jsonl import read_jsonl
from specfair.tasks.split import DEFAULT_TEST_FRACTION
from specfair.tasks.suite import Suite, sample_per_task
from specfair.tasks.suite_config import suite_from_config


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
    text, origin, base, packaged, default_name = _suite_text(spec)
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


def _suite_text(spec: str | Path) -> tuple[str, str, Path, bool, str]:
    """A suite TOML's text, where it came from (for messages), the base for its relative paths,
    whether it is packaged, and its default name."""
    path = Path(spec)
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise SpecfairError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
        except OSError as e:
            raise SpecfairError(f"{path}: cannot read ({e.strerror or e})") from None
        return text, str(path), path.resolve().parent, False, _stem(path)
    if isinstance(spec, str) and "/" not in spec and (res := _packaged(spec)) is not None:
        text = res.read_text(encoding="utf-8")
        return text, f"packaged suite {spec!r}", Path.cwd(), True, spec
    raise SpecfairError(
        f"suite not found: {spec} (give a TOML file or one of: {', '.join(packaged_suites())})"
    )


def _stem(path: Path) -> str:
    stem = path.stem
    return stem[len("suite_") :] if stem.startswith("suite_") else stem
