"""The ``study`` suite: tasks at a scale that can move acceptance (>= 150 train and >= 40 test
prompts each), built from real public data fetched by ``specfair data fetch``.

Every task is one :class:`StudyTask` entry: its source (with its license in
:data:`specfair.tasks.datasets.SOURCES`) and how its prompts are derived. Prompts are picked with
the suite's seeded hash (:func:`sample_per_task`), and the hash split keeps train and test apart
(MGSM rows share their English question as split group, so a problem is in one split in every
language and in the en→fr task; every prompt derived from one ShareGPT conversation has the
conversation as split group, so a conversation is in one split in chat/code and summarization;
every prompt derived from one HSK sentence, or from sentences with its Chinese or English text,
has the sentence as split group).

The ``extra`` tasks (loaded only when named; issue 29: more data for the lagging translations,
and answers long enough that decoding, not prefill, dominates a timed step) translate every HSK
sentence (``*_sent``), English paragraphs of ShareGPT answers into Japanese and Chinese and HSK
sentences joined into paragraphs into English (``*_para``). :func:`human_written` and
:func:`monolingual` give real Chinese and Japanese text that is not a task (``monolingual``
also HSK's English translations); :func:`debian_faq` the Debian FAQ's questions in English,
Japanese and Chinese. Sources, licences and counts: docs/DATA.md.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from specfair.errors import SpecfairError
from specfair.tasks import sharegpt
from specfair.tasks.datasets import source_path
from specfair.tasks.prompt import Prompt, normalize_text
from specfair.tasks.readers_math import read_gsm8k, read_mgsm
from specfair.tasks.sharegpt import SUMMARY_INSTRUCTION
from specfair.tasks.split import split_of
from specfair.tasks.suite import Suite, sample_per_task
from specfair.tasks.synthetic import SOURCE as SYNTHETIC
from specfair.tasks.synthetic import read_synthetic

_SYNTH = ("written by the target (`specfair data synthesize`) from 4 of the embedded default "
          "suite's train prompts of the task as examples")
PER_TASK = 250  # prompts per task before the split (test_fraction 0.2: ~200 train, ~50 test)
TEST_FRACTION = 0.2
HSK_PARAGRAPH_CHARS = 400  # English characters of a zh→en paragraph's reference (~90 tokens)
SHAREGPT_FILE = "ShareGPT_V3_unfiltered_cleaned_split.json"
_LANGUAGE = {"ja": "Japanese", "zh": "Chinese", "en": "English"}
_PLACEHOLDERS = {"placeholder", "ph"}  # HSK rows whose English was never written


@dataclass(frozen=True)
class StudyTask:
    name: str
    source: str
    derived: str  # how the prompts are made, in words
    build: Callable[[], list[Prompt]]
    text_reference: bool = False  # the reference is a full answer text (usable training text)
    n: int | None = PER_TASK  # prompts kept before the split (None: all the source gives)
    extra: bool = False  # loaded only when named (the long translation tasks of issue 29)


def _sharegpt_path() -> Path:
    return source_path("sharegpt", SHAREGPT_FILE)


@functools.cache
def _sharegpt_prompts(path: Path) -> dict[str, list[Prompt]]:
    """The chat, code and summarization prompts of the English ShareGPT conversations, split by
    conversation (:func:`specfair.tasks.sharegpt.index`); a task keeps the first of prompts
    with the same text."""
    _convs, rows, groups = sharegpt.index(path)
    out: dict[str, list[Prompt]] = {"chat": [], "code": [], "summarization": []}
    seen: set[tuple[str, str]] = set()
    for kind, cid, text, answer in rows:
        if (kind, key := normalize_text(text)) in seen:
            continue  # a re-shared copy of a prompt already in the task
        seen.add((kind, key))
        out[kind].append(Prompt(f"sharegpt_{kind}-{cid}", kind, (text,),
                                reference=answer if kind != "summarization" else None,
                                source="sharegpt", group=sharegpt.group(groups, cid)))
    return out


def _sharegpt(kind: str) -> list[Prompt]:
    return _sharegpt_prompts(_sharegpt_path())[kind]


def _sharegpt_paragraphs(direction: str) -> list[Prompt]:
    """An English paragraph of a ShareGPT answer to translate (no reference: the target's
    answers are the training text); id ``sharegpt_para_<direction>-<conversation>.<turn>.<k>``
    (the k-th blank-line paragraph of that turn); the conversation's split group, so a
    conversation is in one split in these tasks and in chat, code and summarization."""
    convs, _rows, groups = sharegpt.index(_sharegpt_path())
    lang = _LANGUAGE[direction.split("_")[1]]
    return [Prompt(f"sharegpt_para_{direction}-{cid}.{turn}.{k}", f"translation_{direction}_para",
                   (f"Translate into {lang}:\n{para}",), source="sharegpt",
                   group=sharegpt.group(groups, cid))
            for cid, turn, k, para in sharegpt.english_paragraphs(convs)]


@functools.cache
def _hsk_all(path: Path) -> tuple[list[dict], dict[str, str]]:
    """Every HSK sentence with an English translation, and each one's split group:
    ``hsk sentence <id>``, the id of the first sentence (file order) with the same Chinese or
    English text (normalised; 41 English texts are in two or three sentences), so that equal
    texts are in one split in every task. Left out: the 67 whose "translation" is a
    placeholder (``placeholder``, ``PH``)."""
    rows = [r for r in json.loads(path.read_text(encoding="utf-8"))
            if r.get("chinese") and (en := r.get("translation", {}).get("en"))
            and normalize_text(en) not in _PLACEHOLDERS]
    first: dict[tuple[str, str], str] = {}
    group: dict[str, str] = {}
    for r in rows:
        keys = [("zh", normalize_text(r["chinese"])),
                ("en", normalize_text(r["translation"]["en"]))]
        owner = next((group[first[k]] for k in keys if k in first), str(r["id"]))
        for k in keys:
            first.setdefault(k, str(r["id"]))
        group[str(r["id"])] = owner
    return rows, {i: f"hsk sentence {g}" for i, g in group.items()}


def _hsk_rows(every: bool = False) -> tuple[list[dict], dict[str, str]]:
    """HSK level >= 2 sentences of >= 10 characters with an English translation (``every``:
    all with one), and the split groups (:func:`_hsk_all`)."""
    rows, groups = _hsk_all(source_path("hsk", "sentences.json"))
    if not every:
        rows = [r for r in rows if r.get("hsk_level", 0) >= 2 and len(r["chinese"]) >= 10]
    return rows, groups


def _hsk(direction: str, every: bool = False) -> list[Prompt]:
    """HSK sentences in one direction; every direction of one sentence has the sentence as split
    group, so it is in one split in zh→en, en→zh and en→ja (a reference of one is never a test
    prompt of another). ``every``: all sentences of :func:`_hsk_all` (tasks ``*_sent``), else
    those of :func:`_hsk_rows`."""
    out = []
    rows, groups = _hsk_rows(every)
    name = f"translation_{direction}" + ("_sent" if every else "")
    for r in rows:
        zh, en = r["chinese"], r["translation"]["en"]
        text, ref = {"zh_en": (f"Translate into English:\n{zh}", en),
                     "en_zh": (f"Translate into Chinese:\n{en}", zh),
                     "en_ja": (f"Translate into Japanese:\n{en}", None)}[direction]
        out.append(Prompt(f"hsk_{direction}{'_sent' if every else ''}-{r['id']}", name, (text,),
                          reference=ref, source="hsk", group=groups[str(r["id"])]))
    return out


def _hsk_paragraphs() -> list[Prompt]:
    """HSK sentences joined into paragraphs to translate into English; the reference joins their
    English translations. A paragraph joins sentences of one split (each sentence's group, as
    in the sentence tasks) and one HSK level, in topic and then file order, until its English
    has more than :data:`HSK_PARAGRAPH_CHARS` characters (a short rest is left out); it has its
    first sentence's group, so it is in the split of every sentence in it. Its id names every
    sentence: ``hsk_para_zh_en-<id>+<id>+...``."""
    rows, groups = _hsk_rows(every=True)
    bins: dict[tuple[str, int], list[dict]] = {}
    for r in rows:
        key = (split_of(groups[str(r["id"])], TEST_FRACTION), int(r.get("hsk_level", 0)))
        bins.setdefault(key, []).append(r)
    out = []
    for key in sorted(bins):
        cur: list[dict] = []
        for r in sorted(bins[key], key=lambda r: str(r.get("topic", ""))):  # stable
            cur.append(r)
            if sum(len(x["translation"]["en"]) + 1 for x in cur) > HSK_PARAGRAPH_CHARS:
                zh = "".join(x["chinese"].strip() for x in cur)
                en = " ".join(x["translation"]["en"].strip() for x in cur)
                out.append(Prompt("hsk_para_zh_en-" + "+".join(str(x["id"]) for x in cur),
                                  "translation_zh_en_para", (f"Translate into English:\n{zh}",),
                                  reference=en, source="hsk", group=groups[str(cur[0]["id"])]))
                cur = []
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
    StudyTask("translation_zh_en_sent", "hsk", "'Translate into English:' + any of the 4,287 "
              "translated HSK sentences; reference: its English translation (the full pool of "
              "translation_zh_en, whose 250 prompts the packaged configs keep)",
              lambda: _hsk("zh_en", every=True), True, n=None, extra=True),
    StudyTask("translation_en_zh_sent", "hsk", "'Translate into Chinese:' + the English "
              "translation of any HSK sentence; reference: the sentence",
              lambda: _hsk("en_zh", every=True), True, n=None, extra=True),
    StudyTask("translation_en_ja_sent", "hsk", "'Translate into Japanese:' + the English "
              "translation of any HSK sentence (no reference)",
              lambda: _hsk("en_ja", every=True), n=None, extra=True),
    StudyTask("translation_en_ja_para", "sharegpt", "'Translate into Japanese:' + an English "
              f"prose paragraph ({sharegpt.PARAGRAPH_CHARS[0]}-{sharegpt.PARAGRAPH_CHARS[1]} "
              "characters, no code, list or table) of a ShareGPT answer, at most "
              f"{sharegpt.PARAGRAPHS_PER_CONVERSATION} per conversation (no reference: the "
              "target's answers are the training text)",
              lambda: _sharegpt_paragraphs("en_ja"), n=None, extra=True),
    StudyTask("translation_en_zh_para", "sharegpt", "'Translate into Chinese:' + the English "
              "paragraphs of translation_en_ja_para (no reference)",
              lambda: _sharegpt_paragraphs("en_zh"), n=None, extra=True),
    StudyTask("translation_zh_en_para", "hsk", "'Translate into English:' + HSK sentences of "
              f"one level and split joined until their English has > {HSK_PARAGRAPH_CHARS} "
              "characters; reference: their English translations joined", _hsk_paragraphs,
              True, n=None, extra=True),
    StudyTask("mgsm_zh", "mgsm", "an MGSM Chinese question as is (a math word problem in "
              "Chinese; the same problems as mgsm_ja and translation_en_fr)", lambda: _mgsm("zh")),
    StudyTask("mgsm_ja", "mgsm", "an MGSM Japanese question as is (a math word problem in "
              "Japanese)", lambda: _mgsm("ja")),
)


def text_reference_tasks() -> set[str]:
    return {t.name for t in STUDY_TASKS if t.text_reference}


_OWN = object()  # load_study_suite's default: each task's own ``n``


def load_study_suite(n_per_task: int | None | object = _OWN, seed: int = 0,
                     tasks: Iterable[str] | None = None) -> Suite:
    """The study suite's ``tasks`` (default: all but the ``extra`` ones), ``n_per_task`` prompts
    each (default: each task's own ``n``: :data:`PER_TASK`, or all the source gives for the
    extra tasks; ``None``: all of every task)."""
    keep = None if tasks is None else set(tasks)
    if keep is not None and (unknown := keep - {t.name for t in STUDY_TASKS}):
        raise SpecfairError(f"study suite: no task(s) {sorted(unknown)}")
    items: list[Prompt] = []
    sources: dict[str, list[str]] = {}
    for task in STUDY_TASKS:
        if (task.extra and keep is None) or (keep is not None and task.name not in keep):
            continue
        n = task.n if n_per_task is _OWN else n_per_task
        prompts = sample_per_task(task.build(), n, seed)
        if not prompts:
            raise SpecfairError(f"study suite: task {task.name} has no prompts")
        items.extend(prompts)
        sources[task.name] = [task.source]
    suite = Suite("study", items, TEST_FRACTION, seed, origin="study", sources=sources)
    suite.check()
    return suite


def debian_faq(lang: str) -> list[Prompt]:
    """The Debian FAQ's 146 questions in ``lang`` (``"en"``, ``"ja"`` or ``"zh"``; written in
    English by the FAQ's authors, translated by Debian's Japanese and Chinese teams), in section
    order. A question has the same split group in every language (``debian faq <section>``),
    so its translations are in one split and pair by section; ids
    ``debian_faq_<lang>-<section>``."""
    from specfair.tasks.readers_debian import faq_questions

    file = {"en": "en", "ja": "ja", "zh": "zh-cn"}.get(lang)
    if file is None:
        raise SpecfairError(f"debian_faq: no language {lang!r} (en, ja or zh)")
    questions = faq_questions(source_path("debian_faq", f"debian-faq.{file}.txt.gz"))
    return [Prompt(f"debian_faq_{lang}-{k}", f"faq_{lang}", (text,), source="debian_faq",
                   group=f"debian faq {k}") for k, text in questions.items()]


def human_written(lang: str, mgsm: bool = True, faq: bool = True) -> list[Prompt]:
    """Real human-written text in ``lang`` (``"zh"`` or ``"ja"``) to check the target-written
    prompts of that task against: ShareGPT's human turns in the language (requests; any turn,
    so a few follow-ups; :func:`specfair.tasks.sharegpt.human_turns`), then (``faq``) the Debian
    FAQ's questions in it (:func:`debian_faq`: open-ended questions about one operating system,
    human translations), then (``mgsm``) MGSM's questions in it (professional translations of
    GSM8K problems: math only). Each prompt's id names its row
    (``sharegpt_human_<lang>-<conversation>.<turn>``, ``debian_faq_<lang>-<section>``,
    ``mgsm_<lang>-<row>``) and it has the split group of that row in the study suite."""
    if lang not in ("zh", "ja"):
        raise SpecfairError(f"human_written: no language {lang!r} (zh or ja)")
    convs, _rows, groups = sharegpt.index(_sharegpt_path())
    out = [Prompt(f"sharegpt_human_{lang}-{cid}.{turn}", lang, (text,), source="sharegpt",
                  group=sharegpt.group(groups, cid))
           for cid, turn, text in sharegpt.human_turns(convs, lang)]
    more = (debian_faq(lang) if faq else []) + (_mgsm(lang) if mgsm else [])
    return out + [Prompt(p.id, lang, p.turns, source=p.source, group=p.group) for p in more]


def debian_reference(lang: str) -> list[Prompt]:
    """Debian Reference's prose paragraphs in ``lang`` (``"ja"``: 1,088 paragraphs, 112k
    characters; ``"zh"``: 801, 63k; human translations of the system administration guide):
    ids ``debian_reference_<lang>-<n>`` by order, each its own split group."""
    from specfair.tasks.readers_debian import cjk_paragraphs

    file = {"ja": "ja", "zh": "zh-cn"}.get(lang)
    if file is None:
        raise SpecfairError(f"debian_reference: no language {lang!r} (ja or zh)")
    path = source_path(f"debian_reference_{lang}", f"debian-reference.{file}.txt.gz")
    return [Prompt(f"debian_reference_{lang}-{i}", f"monolingual_{lang}", (text,),
                   source=f"debian_reference_{lang}", group=f"debian reference {lang} {i}")
            for i, text in enumerate(cjk_paragraphs(path))]


def monolingual(lang: str, mgsm: bool = True, faq: bool = True,
                reference: bool = True) -> list[Prompt]:
    """Unlabeled human-written text in ``lang`` (the ``monolingual`` arm: text in a task's output
    language), each with the split group it has in the study suite: ``"zh"``: every HSK
    sentence (``hsk_mono-<id>``), then (``reference``) Debian Reference's Chinese paragraphs
    (:func:`debian_reference`), then :func:`human_written` Chinese; ``"ja"``: (``reference``)
    Debian Reference's Japanese paragraphs, then :func:`human_written` Japanese (no Japanese
    corpus was found among the PyPI packages; the Debian documentation packages are the one
    found); ``"en"``: every HSK sentence's English
    translation (``hsk_mono_en-<id>``, written by the HSK project's contributors; ShareGPT's
    English answers are ChatGPT's and the chat and code tasks' references, so they are not
    used). ``mgsm``, ``faq``, ``reference``: take that source (it must be fetched)."""
    if lang not in ("zh", "ja", "en"):
        raise SpecfairError(f"monolingual: no language {lang!r} (zh, ja or en)")
    if lang == "en":
        rows, groups = _hsk_rows(every=True)
        return [Prompt(f"hsk_mono_en-{r['id']}", "monolingual_en",
                       (r["translation"]["en"].strip(),), source="hsk",
                       group=groups[str(r["id"])]) for r in rows]
    out = []
    if lang == "zh":
        rows, groups = _hsk_rows(every=True)
        out = [Prompt(f"hsk_mono-{r['id']}", "monolingual_zh", (r["chinese"].strip(),),
                      source="hsk", group=groups[str(r["id"])]) for r in rows]
    if reference:
        out += debian_reference(lang)
    return out + [Prompt(p.id, f"monolingual_{lang}", p.turns, source=p.source, group=p.group)
                  for p in human_written(lang, mgsm, faq)]
