"""The ``Prompt`` record and the text normalisation used for splitting and overlap checks."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass


@dataclass(frozen=True)
class Prompt:
    """One prompt of a task suite.

    ``turns`` holds the user messages; a multi-turn prompt asks ``turns[1]`` after the model's
    own answer to ``turns[0]`` (see :func:`specfair.tasks.encode_prompt`). ``id`` is unique
    within a suite; ``source`` names where the prompt came from (a suite source name or file).
    ``group`` (optional) is the text whose hash decides the train/test split instead of the
    first turn: translations of one problem (MGSM rows) share their English text as group, so
    they all land in the split of the English (GSM8K) original.
    """

    id: str
    task: str
    turns: tuple[str, ...]
    reference: str | None = None
    source: str = ""
    group: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.turns, str):  # a common slip: Prompt(..., turns="text")
            object.__setattr__(self, "turns", (self.turns,))
        elif not isinstance(self.turns, tuple):
            object.__setattr__(self, "turns", tuple(self.turns))
        if not self.turns:
            raise ValueError(f"prompt {self.id!r} has no turns")

    @property
    def text(self) -> str:
        """The first user message."""
        return self.turns[0]

    @property
    def split_text(self) -> str:
        """The text the split is keyed on: ``group`` if set, else the first user message."""
        return self.group if self.group is not None else self.turns[0]


def normalize_text(text: str) -> str:
    """Normalise text for hashing and duplicate detection.

    NFKC, case-folded, and every run of characters that are not letters, digits or combining
    marks (whitespace, punctuation, symbols, underscores) replaced by a single space, stripped.
    So ``"Hello,   World!"`` and ``"hello world"`` normalise alike, as do curly vs straight
    quotes and re-wrapped lines.
    """
    text = unicodedata.normalize("NFKC", text).casefold()
    out: list[str] = []
    gap = False
    for ch in text:
        if unicodedata.category(ch)[0] in "LNM":
            if gap and out:
                out.append(" ")
            out.append(ch)
            gap = False
        else:
            gap = True
    return "".join(out)
