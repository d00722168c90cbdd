"""Deterministic train/test split by a stable hash of the prompt text, and leak checks."""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

from specfair.errors import SpecfairError
from specfair.tasks.prompt import Prompt, normalize_text

DEFAULT_TEST_FRACTION = 0.3

Split = Literal["train", "test"]


def split_key(prompt: Prompt | str) -> str:
    """Hex sha256 (of UTF-8) of the normalised :attr:`Prompt.split_text` (the first user
    message unless the prompt has a ``group``)."""
    text = prompt if isinstance(prompt, str) else prompt.split_text
    return hashlib.sha256(normalize_text(text).encode("utf-8")).hexdigest()


def split_position(prompt: Prompt | str) -> float:
    """A number in [0, 1) fixed by the prompt text: the first 64 bits of :func:`split_key`."""
    return int(split_key(prompt)[:16], 16) / 2.0**64


def split_of(prompt: Prompt | str, test_fraction: float = DEFAULT_TEST_FRACTION) -> Split:
    """``"test"`` if the prompt's hash position is below ``test_fraction``, else ``"train"``.

    Keyed on the normalised text of the first turn only (not id, task or source), so the same
    question reached from two sources (MGSM-en and GSM8K test, say) always lands in one split,
    and multi-turn prompts sharing an opening land together. A prompt with a ``group`` is keyed
    on that instead (MGSM translations use their English original). Independent of the process,
    platform and the other prompts; growing ``test_fraction`` only moves prompts train → test.
    """
    if not 0.0 <= test_fraction <= 1.0:
        raise SpecfairError(f"test_fraction must be within [0, 1], got {test_fraction}")
    return "test" if split_position(prompt) < test_fraction else "train"


def check_no_overlap(train: Iterable[Prompt], test: Iterable[Prompt]) -> None:
    """Raise :class:`SpecfairError` if any user message of a train prompt equals (after
    :func:`normalize_text`: case, punctuation, whitespace ignored) any user message of a test
    prompt, if a split group (e.g. one MGSM problem in any language) is in both, or if an id
    is in both."""
    seen: dict[str, str] = {}
    groups: dict[str, str] = {}
    train_ids: set[str] = set()
    for p in train:
        train_ids.add(p.id)
        if p.group is not None:
            groups.setdefault(normalize_text(p.group), p.id)
        for t in p.turns:
            if key := normalize_text(t):
                seen.setdefault(key, p.id)
    clashes: list[str] = []
    for p in test:
        if p.id in train_ids:
            clashes.append(f"id {p.id!r} is in both splits")
        key = normalize_text(p.split_text)
        other = None
        if key:
            other = groups.get(key) or (seen.get(key) if p.group is not None else None)
        if other is not None:
            clashes.append(f"test prompt {p.id!r} is in the split group of train prompt {other!r}")
            continue
        for t in p.turns:
            other = seen.get(normalize_text(t) or "\0")
            if other is not None:
                clashes.append(f"test prompt {p.id!r} repeats the text of train prompt {other!r}")
                break
    if clashes:
        more = f" (and {len(clashes) - 5} more)" if len(clashes) > 5 else ""
        raise SpecfairError(
            "train/test overlap: " + "; ".join(clashes[:5]) + more + " — fine-tuning would see "
            "test prompts"
        )


LEAK_MIN_CHARS = 24  # shorter normalised texts ("Sure!", a number) are too common to leak
LEAK_TEMPLATE_ITEMS = 5  # a unit in more items than this is a template, not a source
_PARAGRAPH = re.compile(r"\n\s*\n")


def text_units(texts: Iterable[str]) -> set[str]:
    """The sha256 (hex) of each text and of each of its paragraphs (split at blank lines), after
    :func:`normalize_text`; units under :data:`LEAK_MIN_CHARS` normalised characters are left
    out. A text quoted as a paragraph of another (a ShareGPT answer inside a summarization
    prompt) shares a unit with it."""
    out: set[str] = set()
    for text in texts:
        for part in [text, *_PARAGRAPH.split(text)]:
            if len(norm := normalize_text(part)) >= LEAK_MIN_CHARS:
                out.add(hashlib.sha256(norm.encode("utf-8")).hexdigest())
    return out


def find_leaks(train: Mapping[str, Sequence[str]],
               test: Mapping[str, Sequence[str]]) -> dict[str, str]:
    """The train items that share a text unit (:func:`text_units`) with a test item:
    ``{train id: one test id}``. ``train`` maps an id to its texts that training sees (prompt
    turns, training text); ``test`` to its prompt turns and reference answer. A unit in more
    than :data:`LEAK_TEMPLATE_ITEMS` items (train and test together) is a template that many
    prompts repeat (a task's instruction "Summarize the following text ...", a stock closing
    paragraph), not one source, and is not compared."""
    test_units = {tid: text_units(texts) for tid, texts in test.items()}
    train_units = {pid: text_units(texts) for pid, texts in train.items()}
    count = Counter(u for us in [*test_units.values(), *train_units.values()] for u in us)
    owner: dict[str, str] = {}
    for tid, us in test_units.items():
        for u in us:
            if count[u] <= LEAK_TEMPLATE_ITEMS:
                owner.setdefault(u, tid)
    leaks: dict[str, str] = {}
    for pid, us in train_units.items():
        if hit := next((owner[u] for u in sorted(us) if u in owner), None):
            leaks[pid] = hit
    return leaks


def find_contained(train: Mapping[str, str], test: Mapping[str, Sequence[str]],
                   ) -> dict[str, tuple[str, str]]:
    """The train texts that equal or contain a test text: ``{train id: (test id, sha256 of the
    test unit)}``. A test item's units are its texts and their blank-line paragraphs, after
    :func:`normalize_text`, of at least :data:`LEAK_MIN_CHARS` characters (their sha256 are
    :func:`text_units`); a train text leaks when its normalised text contains one as whole
    words, anywhere (equal, a paragraph of it, or mid-sentence: stronger than comparing hashes
    of whole units).
    A unit in more than :data:`LEAK_TEMPLATE_ITEMS` items (test items that have it and train
    texts that contain it, together) is a template (an instruction many prompts repeat, a stock
    opening of many answers), not one source, and is not compared (as :func:`find_leaks`)."""
    norm = {pid: f" {normalize_text(t)} " for pid, t in train.items()}  # whole words only
    owners: dict[str, list[str]] = {}
    for tid, texts in test.items():
        for text in texts:
            for part in [text, *_PARAGRAPH.split(text)]:
                unit = normalize_text(part)
                if len(unit) >= LEAK_MIN_CHARS and tid not in owners.setdefault(unit, []):
                    owners[unit].append(tid)
    leaks: dict[str, tuple[str, str]] = {}
    for unit, tids in owners.items():
        if len(tids) > LEAK_TEMPLATE_ITEMS:
            continue
        hits = [pid for pid, t in norm.items() if f" {unit} " in t]
        if len(hits) + len(tids) > LEAK_TEMPLATE_ITEMS:
            continue
        digest = hashlib.sha256(unit.encode("utf-8")).hexdigest()
        for pid in hits:
            leaks.setdefault(pid, (tids[0], digest))
    return leaks
