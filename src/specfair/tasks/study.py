"""The ``study`` suite: 8 tasks at a scale that can move acceptance (>= 150 train and >= 40 test
prompts each), built from real public data fetched by ``specfair data fetch``.

Every task is one :class:`StudyTask` entry: its source (with its license in
:data:`specfair.tasks.datasets.SOURCES`) and how its prompts are derived. Prompts are picked with
the suite's seeded hash (:func:`sample_per_task`), and the hash split keeps train and test apart
(MGSM rows share their English question as split group, so a problem is in one split in every
language and in the en→fr task; every prompt derived from one ShareGPT conversation has the
conversation as split group, so a conversation is in one split in chat/code and summarization).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from specfair.errors import SpecfairError
from specfair.tasks.datasets import source_path
from specfair.tasks.prompt import Prompt, normalize_text
from specfair.tasks.readers_math import read_gsm8k, read_mgsm
from specfair.tasks.split import LEAK_MIN_CHARS
from specfair.tasks.suite import Suite, sample_per_task
from specfair.tasks.synthetic import SOURCE as SYNTHETIC
from specfair.tasks.synthetic import read_synthetic

_SYNTH = ("written by the target (`specfair data synthesize`) from 4 of the embedded default "
          "suite's train prompts of the task as examples")
PER_TASK = 250  # prompts per task before the split (test_fraction 0.2: ~200 train, ~50 test)
TEST_FRACTION = 0.2
SUMMARY_INSTRUCTION = ("Summarize the following text in one sentence, in your own words "
                       "(do not copy its sentences).")
_CODE = re.compile(r"```|\bdef |\bfunction\b|\bpython\b|\bjavascript\b|\bSQL\b|\bcode\b|"
                   r"\bclass |\breact\b|\bjava\b|\bC\+\+|\bscript\b", re.IGNORECASE)


@dataclass(frozen=True)
class StudyTask:
    name: str
    source: str
    derived: str  # how the prompts are made, in words
    build: Callable[[], list[Prompt]]
    text_reference: bool = False  # the reference is a full answer text (usable training text)


def _sharegpt_conversations(path: Path) -> list[dict]:
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


def _english(s: str) -> bool:
    return sum(c.isascii() for c in s) >= 0.97 * len(s)


def _turns(conv: dict) -> list[tuple[str, str]]:
    return [(t.get("from", ""), t.get("value", "") or "") for t in conv.get("conversations", [])]


def _sharegpt_kind(human: str, answer: str) -> list[tuple[str, str]]:
    """``(task, prompt text)`` for each task a conversation's first exchange feeds."""
    out = []
    code = bool(_CODE.search(human))
    if not code and 30 <= len(human) <= 600:
        out.append(("chat", human))
    elif code and 40 <= len(human) <= 1500:
        out.append(("code", human))
    if 400 <= len(answer) <= 1200 and _english(answer) and not _CODE.search(answer):
        out.append(("summarization", f"{SUMMARY_INSTRUCTION}\n\n{answer}"))
    return out


@functools.cache
def _sharegpt_prompts(path: Path) -> dict[str, list[Prompt]]:
    """The chat, code and summarization prompts of the English ShareGPT conversations.

    Every prompt derived from one conversation has that conversation as split group, so a
    conversation is in one split whatever tasks it feeds (its answer is the chat/code training
    text and the summarization source). Conversations that repeat a prompt text or an answer
    (ShareGPT holds re-shared copies) are joined into the group of the first of them, so equal
    texts are never split apart; a task keeps the first of prompts with the same text."""
    rows = []
    for conv in _sharegpt_conversations(path):
        turns = _turns(conv)
        if len(turns) < 2 or turns[0][0] != "human":
            continue
        human, answer = turns[0][1].strip(), turns[1][1].strip()
        if _english(human):
            rows += [(kind, str(conv["id"]), text, answer)
                     for kind, text in _sharegpt_kind(human, answer)]
    parent: dict[str, str] = {}

    def root(c: str) -> str:
        while parent.setdefault(c, c) != c:
            parent[c] = c = parent[parent[c]]
        return c

    owner: dict[str, str] = {}
    for _kind, cid, text, answer in rows:
        a_key = normalize_text(answer)  # a stock answer ("Hello! How can I help?") joins none
        for key in [normalize_text(text)] + ([a_key] if len(a_key) >= LEAK_MIN_CHARS else []):
            if not key:
                continue
            a, b = root(owner.setdefault(key, cid)), root(cid)
            if a != b:  # deterministic: the file order decides the group's name
                parent[b] = a
    out: dict[str, list[Prompt]] = {"chat": [], "code": [], "summarization": []}
    seen: set[tuple[str, str]] = set()
    for kind, cid, text, answer in rows:
        if (kind, key := normalize_text(text)) in seen:
            continue  # a re-shared copy of a prompt already in the task
        seen.add((kind, key))
        out[kind].append(Prompt(f"sharegpt_{kind}-{cid}", kind, (text,),
                                reference=answer if kind != "summarization" else None,
                                source="sharegpt", group=f"sharegpt conversation {root(cid)}"))
    return out


def _sharegpt(kind: str) -> list[Prompt]:
    path = source_path("sharegpt", "ShareGPT_V3_unfiltered_cleaned_split.json")
    return _sharegpt_prompts(path)[kind]


def _hsk_rows() -> list[dict]:
    """HSK level >= 2 sentences of >= 10 characters with an English translation."""
    rows = json.loads(source_path("hsk", "sentences.json").read_text(encoding="utf-8"))
    return [r for r in rows if r.get("hsk_level", 0) >= 2 and len(r.get("chinese", "")) >= 10
            and r.get("translation", {}).get("en")]


def _hsk(direction: str) -> list[Prompt]:
    """HSK sentences in one direction; every direction of one sentence has the sentence as split
    group, so it is in one split in zh→en, en→zh and en→ja (a reference of one is never a test
    prompt of another)."""
    out = []
    for r in _hsk_rows():
        zh, en = r["chinese"], r["translation"]["en"]
        text, ref = {"zh_en": (f"Translate into English:\n{zh}", en),
                     "en_zh": (f"Translate into Chinese:\n{en}", zh),
                     "en_ja": (f"Translate into Japanese:\n{en}", None)}[direction]
        out.append(Prompt(f"hsk_{direction}-{r['id']}", f"translation_{direction}", (text,),
                          reference=ref, source="hsk", group=f"hsk sentence {r['id']}"))
    return out


def _mgsm(lang: str) -> list[Prompt]:
    en = source_path("mgsm", "mgsm_en.tsv")
    return read_mgsm(source_path("mgsm", f"mgsm_{lang}.tsv"), language=lang,
                     task=f"mgsm_{lang}", english=en)


def _en_fr() -> list[Prompt]:
    en = read_mgsm(source_path("mgsm", "mgsm_en.tsv"), language="en", english=False)
    fr = read_mgsm(source_path("mgsm", "mgsm_fr.tsv"), language="fr", english=False)
    return [Prompt(f"mgsm_en_fr-{i}", "translation_en_fr", (f"Translate into French:\n{e.text}",),
                   reference=f.text, source="mgsm", group=e.text)
            for i, (e, f) in enumerate(zip(en, fr, strict=True))]


def _gsm8k() -> list[Prompt]:
    """GSM8K train questions; the reference is the worked solution (calculator annotations
    ``<<...>>`` removed, ``#### N`` written as ``The answer is N.``)."""
    path = source_path("gsm8k", "train.jsonl")
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    out = []
    for p, row in zip(read_gsm8k(path, source="gsm8k_train", task="math"), rows, strict=True):
        work, _, final = row["answer"].rpartition("####")
        text = re.sub(r"<<[^>]*>>", "", work).strip() + f"\nThe answer is {final.strip()}."
        out.append(Prompt(p.id, p.task, p.turns, reference=text, source=p.source))
    return out


STUDY_TASKS: tuple[StudyTask, ...] = (
    StudyTask("chat", "sharegpt", "first user turn of an English ShareGPT conversation without "
              "code markers, 30-600 characters; reference: the conversation's answer",
              lambda: _sharegpt("chat"), True),
    StudyTask("code", "sharegpt", "first user turn of an English ShareGPT conversation that "
              "mentions code (```, def, function, python, SQL, ...), 40-1500 characters; "
              "reference: the conversation's answer",
              lambda: _sharegpt("code"), True),
    StudyTask("summarization", "sharegpt", f"'{SUMMARY_INSTRUCTION}' + an English ShareGPT "
              "answer of 400-1200 characters without code (abstractive: one sentence, own words)",
              lambda: _sharegpt("summarization")),
    StudyTask("math", "gsm8k", "a GSM8K train question as is; reference: its worked solution "
              "(GSM8K test, the source of MGSM, is not used)", _gsm8k, True),
    StudyTask("qa", SYNTHETIC, "a short factual question in English " + _SYNTH,
              lambda: read_synthetic("qa")),
    StudyTask("zh", SYNTHETIC, "an open-ended request in Chinese (like its seeds, a few are "
              "small math questions) " + _SYNTH,
              lambda: read_synthetic("zh")),
    StudyTask("ja", SYNTHETIC, "an open-ended request in Japanese (like its seeds, a few are "
              "small math questions) " + _SYNTH,
              lambda: read_synthetic("ja")),
    StudyTask("translation_en_fr", "mgsm", "'Translate into French:' + an MGSM English "
              "question; reference: the MGSM French row", _en_fr, True),
    StudyTask("translation_zh_en", "hsk", "'Translate into English:' + an HSK level >= 2 "
              "sentence of >= 10 characters; reference: its English translation",
              lambda: _hsk("zh_en"), True),
    StudyTask("translation_en_zh", "hsk", "'Translate into Chinese:' + the English translation "
              "of an HSK level >= 2 sentence; reference: the HSK sentence",
              lambda: _hsk("en_zh"), True),
    StudyTask("translation_en_ja", "hsk", "'Translate into Japanese:' + the English translation "
              "of an HSK level >= 2 sentence (no reference)", lambda: _hsk("en_ja")),
    StudyTask("mgsm_zh", "mgsm", "an MGSM Chinese question as is (a math word problem in "
              "Chinese; the same problems as mgsm_ja and translation_en_fr)", lambda: _mgsm("zh")),
    StudyTask("mgsm_ja", "mgsm", "an MGSM Japanese question as is (a math word problem in "
              "Japanese)", lambda: _mgsm("ja")),
)


def text_reference_tasks() -> set[str]:
    return {t.name for t in STUDY_TASKS if t.text_reference}


def load_study_suite(n_per_task: int | None = PER_TASK, seed: int = 0,
                     tasks: Iterable[str] | None = None) -> Suite:
    """The study suite's ``tasks`` (default: all), ``n_per_task`` prompts each."""
    keep = None if tasks is None else set(tasks)
    if keep is not None and (unknown := keep - {t.name for t in STUDY_TASKS}):
        raise SpecfairError(f"study suite: no task(s) {sorted(unknown)}")
    items: list[Prompt] = []
    sources: dict[str, list[str]] = {}
    for task in STUDY_TASKS:
        if keep is not None and task.name not in keep:
            continue
        prompts = sample_per_task(task.build(), n_per_task, seed)
        if not prompts:
            raise SpecfairError(f"study suite: task {task.name} has no prompts")
        items.extend(prompts)
        sources[task.name] = [task.source]
    suite = Suite("study", items, TEST_FRACTION, seed, origin="study", sources=sources)
    suite.check()
    return suite
