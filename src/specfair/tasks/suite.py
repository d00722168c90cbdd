"""Task suites: a set of prompts with task labels, split train/test by a hash of each prompt,
and the seeded per-task sampling that picks them.

A suite is built from a suite TOML by :mod:`specfair.tasks.suite_config` and loaded by name or
path by :mod:`specfair.tasks.suite_load`.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from specfair.errors import SpecfairError
from specfair.tasks.prompt import Prompt
from specfair.tasks.split import DEFAULT_TEST_FRACTION, check_no_overlap, split_key, split_of

SplitName = Literal["train", "test", "all"]


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
