"""Reading the ShareGPT source (``specfair data fetch sharegpt``): its conversations, the split
group of each, the English prose paragraphs of its answers (paragraph translation) and the
human-written turns in one script (Chinese, Japanese). The study suite's tasks are built from
these in :mod:`specfair.tasks.study`."""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from pathlib import Path

from specfair.tasks.prompt import normalize_text
from specfair.tasks.split import LEAK_MIN_CHARS

SUMMARY_INSTRUCTION = ("Summarize the following text in one sentence, in your own words "
                       "(do not copy its sentences).")
CODE = re.compile(r"```|\bdef |\bfunction\b|\bpython\b|\bjavascript\b|\bSQL\b|\bcode\b|"
                  r"\bclass |\breact\b|\bjava\b|\bC\+\+|\bscript\b", re.IGNORECASE)
PARAGRAPH_CHARS = (500, 1200)  # ~110-270 tokens of English: a translation decodes >= 100 tokens
PARAGRAPHS_PER_CONVERSATION = 3
_BLANK_LINE = re.compile(r"\n\s*\n")
_LIST_OR_TABLE = re.compile(r"^\s*([-*•#>|]|\d+[.)])", re.MULTILINE)


def conversations(path: Path) -> list[dict]:
    """The complete conversations of the (truncated) ShareGPT V3 JSON array."""
    text = path.read_text(encoding="utf-8", errors="replace")
    dec, pos, out = json.JSONDecoder(), text.index("[") + 1, []
    while True:
        while pos < len(text) and text[pos] in " \r\n\t,":
            pos += 1
        try:
            obj, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            return out  # the truncated tail
        out.append(obj)


def english(s: str) -> bool:
    return sum(c.isascii() for c in s) >= 0.97 * len(s)


def turns(conv: dict) -> list[tuple[str, str]]:
    return [(t.get("from", ""), t.get("value", "") or "") for t in conv.get("conversations", [])]


def _kind(human: str, answer: str) -> list[tuple[str, str]]:
    """``(task, prompt text)`` for each task a conversation's first exchange feeds."""
    out = []
    code = bool(CODE.search(human))
    if not code and 30 <= len(human) <= 600:
        out.append(("chat", human))
    elif code and 40 <= len(human) <= 1500:
        out.append(("code", human))
    if 400 <= len(answer) <= 1200 and english(answer) and not CODE.search(answer):
        out.append(("summarization", f"{SUMMARY_INSTRUCTION}\n\n{answer}"))
    return out


@functools.cache
def index(path: Path) -> tuple[list[dict], list[tuple[str, str, str, str]], dict[str, str]]:
    """The conversations, the chat/code/summarization rows ``(task, id, text, answer)`` of the
    English ones, and each such conversation's split group (:func:`group`).

    Every prompt derived from one conversation has that conversation as split group, so a
    conversation is in one split whatever tasks it feeds (its answer is the chat/code training
    text and the summarization source). Conversations that repeat a prompt text or an answer
    (ShareGPT holds re-shared copies) are joined into the group of the first of them, so equal
    texts are never split apart."""
    convs, rows = conversations(path), []
    for conv in convs:
        ts = turns(conv)
        if len(ts) < 2 or ts[0][0] != "human":
            continue
        human, answer = ts[0][1].strip(), ts[1][1].strip()
        if english(human):
            rows += [(kind, str(conv["id"]), text, answer) for kind, text in _kind(human, answer)]
    parent: dict[str, str] = {}

    def root(c: str) -> str:
        while parent.setdefault(c, c) != c:
            parent[c] = c = parent[parent[c]]
        return c

    owner: dict[str, str] = {}
    for _task, cid, text, answer in rows:
        a_key = normalize_text(answer)  # a stock answer ("Hello! How can I help?") joins none
        for key in [normalize_text(text)] + ([a_key] if len(a_key) >= LEAK_MIN_CHARS else []):
            if not key:
                continue
            a, b = root(owner.setdefault(key, cid)), root(cid)
            if a != b:  # deterministic: the file order decides the group's name
                parent[b] = a
    return convs, rows, {c: root(c) for c in list(parent)}


def group(groups: dict[str, str], cid: str) -> str:
    """The split group of conversation ``cid`` (its own id unless joined to another's)."""
    return f"sharegpt conversation {groups.get(cid, cid)}"


def english_paragraphs(convs: list[dict]) -> list[tuple[str, int, int, str]]:
    """``(conversation id, turn, paragraph, text)`` of the English prose paragraphs of the
    answers (``gpt`` turns): split at blank lines, :data:`PARAGRAPH_CHARS` long, no code
    markers, no list, table or heading line, ending a sentence; the first of equal texts
    (normalised) only, at most :data:`PARAGRAPHS_PER_CONVERSATION` per conversation."""
    lo, hi = PARAGRAPH_CHARS
    seen: set[str] = set()
    out = []
    for conv in convs:
        cid, kept = str(conv.get("id")), 0
        for t, (who, value) in enumerate(turns(conv)):
            if who != "gpt":
                continue
            for k, para in enumerate(_BLANK_LINE.split(value)):
                para = para.strip()
                if not (lo <= len(para) <= hi and english(para) and para[-1] in ".!?\"'"
                        and not CODE.search(para) and not _LIST_OR_TABLE.search(para)):
                    continue
                if (key := normalize_text(para)) in seen:
                    continue
                seen.add(key)
                if kept < PARAGRAPHS_PER_CONVERSATION:
                    out.append((cid, t, k, para))
                    kept += 1
    return out


def _is_kana(c: str) -> bool:
    return "\u3040" <= c <= "\u30ff"


def _is_han(c: str) -> bool:
    return unicodedata.name(c, "").startswith("CJK UNIFIED IDEOGRAPH")


def script(text: str) -> str | None:
    """``"ja"`` (kana are >= 10 % of the letters, kana and Han >= 30 %), ``"zh"`` (Han >= 30 %
    of the letters, no kana) or None."""
    letters = [c for c in text if unicodedata.category(c)[0] == "L"]
    if not letters:
        return None
    kana = sum(map(_is_kana, letters))
    han = sum(map(_is_han, letters))
    if kana >= 0.1 * len(letters) and kana + han >= 0.3 * len(letters):
        return "ja"
    if kana == 0 and han >= 0.3 * len(letters):
        return "zh"
    return None


def human_turns(convs: list[dict], lang: str, min_chars: int = 8
                ) -> list[tuple[str, int, str]]:
    """``(conversation id, turn, text)`` of the human-written turns in ``lang`` (:func:`script`),
    any turn of a conversation, at least ``min_chars`` long, without a code block; the first
    of equal texts (normalised) only."""
    seen: set[str] = set()
    out = []
    for conv in convs:
        for t, (who, value) in enumerate(turns(conv)):
            text = value.strip()
            if who != "human" or len(text) < min_chars or "```" in text or script(text) != lang:
                continue
            if (key := normalize_text(text)) and key not in seen:
                seen.add(key)
                out.append((str(conv.get("id")), t, text))
    return out
