"""The ``monolingual`` arm (issue 29 item 4; Paudel et al.'s second strategy): each translation
task trains on unlabeled text in its output language instead of its translations, as many
supervised tokens as the task's own training sequences hold (the ones the ``uniform`` arm
trains on, :func:`specfair.study.dose.counts`), with the target's signals on that text like on
any training sequence; then it trains exactly as ``uniform`` does (:mod:`specfair.study.arms`).

* **Which text.** By task name (:func:`output_language`): ``translation_en_zh*`` → Chinese,
  ``translation_en_ja*`` → Japanese, ``translation_zh_en*`` → English, read by
  :func:`specfair.tasks.study.monolingual` (HSK sentences, HSK's English translations,
  ShareGPT's human turns, the Debian FAQ's questions, MGSM questions, Debian Reference's
  Japanese and Chinese paragraphs; MGSM and the Debian sources left out, with a note, where
  not fetched).
  Every other task, and a translation task whose language has no usable text, trains on its
  own sequences, and the record says so and why.
* **The prompt.** The chat template with an empty user turn (:data:`PROMPT`), cut like every
  training prompt; the text (cut to ``train_response_tokens``) is the answer, the supervised
  positions.
* **No leak.** A text is used only if its split group is in the suite's train split and is no
  held-out prompt's group, it shares no text with a test prompt or reference
  (:func:`specfair.tasks.split.find_leaks`, as the train prompts), it equals no test prompt,
  reference or target answer (normalised, at any length: HSK sentences are shorter than the
  leak checks' units) and, as trained on, it contains none
  (:func:`specfair.study.data.training_text_leaks`, as the training texts).
* **How much.** Texts in a seeded hash order, those whose split group no training prompt of the
  run has first (text the translation tasks do not use), are taken until the task's supervised
  tokens reach its own (so within one sequence of them); two tasks of one language take
  different texts. A language short of text gives what it has (``reached`` false).

Everything is recorded in ``monolingual.json`` (per language what was read and dropped; per
task what it trained on: text, language, sources, sequences, supervised and prompt tokens, the
text ids) and, per task, in the arm's evaluation records (:meth:`Monolingual.fields`).
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path

from specfair.atomic import write_text
from specfair.errors import SpecfairError
from specfair.measure.progress import say
from specfair.study.config import StudyConfig
from specfair.study.data import Seq, StudyPrompts, cut_prompt, training_text_leaks
from specfair.study.dose import counts
from specfair.tasks import encode_prompt
from specfair.tasks.datasets import SOURCES, cache_state
from specfair.tasks.prompt import Prompt, normalize_text
from specfair.tasks.split import find_leaks, split_key, split_of
from specfair.tasks.study import TEST_FRACTION, monolingual

_say = functools.partial(say, "study")

ARM = "monolingual"
FILE = "monolingual.json"
PROMPT = ""  # the user turn: none (the chat template around an empty message)
PROMPT_NOTE = "the chat template with an empty user turn; the text is the answer"
_LANGUAGE = {"zh": "Chinese", "ja": "Japanese", "en": "English"}
_TASK = re.compile(r"^translation_(en_zh|en_ja|zh_en)(_|$)")


def output_language(task: str) -> str | None:
    """The output language of a translation task into Chinese, Japanese or English (by name:
    ``translation_en_zh*`` → ``zh``, ``translation_en_ja*`` → ``ja``, ``translation_zh_en*`` →
    ``en``); None for any other task."""
    m = _TASK.match(task)
    return m.group(1).split("_")[1] if m else None


@dataclass
class Monolingual:
    """The arm's training sequences (monolingual text where a task has it, else the task's
    own) and what each task trained on (``monolingual.json``'s ``tasks``)."""

    seqs: list[Seq]
    tasks: dict[str, dict]

    @property
    def new(self) -> list[Seq]:
        """The sequences of monolingual text (the others are the run's own: already scored)."""
        return [s for s in self.seqs if s.text_source == ARM]

    def fields(self) -> dict[str, dict]:
        """Per task, the fields each of the arm's records carries: ``trained_on``
        (``monolingual`` or ``own``), ``trained_language``, ``trained_sources`` (``{source:
        texts}``; null for ``own``), ``trained_sequences``, ``trained_supervised_tokens``,
        ``trained_prompt_tokens`` (one epoch)."""
        return {t: {"trained_on": v["text"], "trained_language": v["language"],
                    "trained_sources": v["sources"], "trained_sequences": v["sequences"],
                    "trained_supervised_tokens": v["supervised_tokens"],
                    "trained_prompt_tokens": v["prompt_tokens"]} for t, v in self.tasks.items()}


# the reader's optional sources: its flag -> the data source it reads in each language
OPTIONAL = {"mgsm": {"zh": "mgsm", "ja": "mgsm"},
            "faq": {"zh": "debian_faq", "ja": "debian_faq"},
            "reference": {"zh": "debian_reference_zh", "ja": "debian_reference_ja"}}


def _read(lang: str, reader) -> tuple[list[Prompt], str | None]:
    """``reader(lang, **flags)``'s texts, each optional source (:data:`OPTIONAL`) taken where
    it is fetched and left out with a note (why, and the command that fetches it) where not."""
    flags, notes = {}, []
    for flag, sources in OPTIONAL.items():
        source = sources.get(lang)
        state, why = cache_state(SOURCES[source]) if source else ("missing", "")
        flags[flag] = state == "fetched"
        if source and not flags[flag]:
            notes.append(f"{source} not read ({state}{': ' + why if why else ''}; "
                         f"`specfair data fetch {source}`)")
    try:
        return reader(lang, **flags), "; ".join(notes) or None
    except SpecfairError as e:
        return [], str(e)


def _rank(p: Prompt, seed: int, used: set[str]) -> tuple:
    """Texts of no training prompt's split group first, each part in a seeded hash order."""
    return (split_key(p) in used,
            hashlib.sha256(f"monolingual:{seed}:{p.id}".encode()).hexdigest(), p.id)


def _pool(lang: str, cfg: StudyConfig, tok, prompts: StudyPrompts, test: list[Seq], decode,
          reader) -> tuple[list[tuple[Prompt, Seq]], dict]:
    """The usable texts of ``lang`` as training sequences, in the order they are taken, and
    what was read and dropped (``monolingual.json``'s ``languages``)."""
    texts, note = _read(lang, reader)
    info: dict = {"read": len(texts), "note": note}
    seen: set[str] = set()
    texts = [p for p in texts if (k := normalize_text(p.text)) and not (k in seen or seen.add(k))]
    info["duplicates"] = info["read"] - len(texts)
    keep = [p for p in texts if split_of(p, TEST_FRACTION) == "train"]
    info["test_split"] = len(texts) - len(keep)
    held = {split_key(p) for p in prompts.heldout + prompts.test}
    texts, keep = keep, [p for p in keep if split_key(p) not in held]
    info["heldout_or_test_group"] = len(texts) - len(keep)
    tests = {p.id: p.turns + ((p.reference,) if p.reference else ()) for p in prompts.test}
    leaks = find_leaks({p.id: p.turns for p in keep}, tests)
    texts, keep = keep, [p for p in keep if p.id not in leaks]
    info["leak_check"] = len(texts) - len(keep)
    equal = {normalize_text(x) for v in tests.values() for x in v}
    equal |= {normalize_text(decode(s.ids[s.n_prompt:])) for s in test}
    texts, keep = keep, [p for p in keep if normalize_text(p.text) not in equal]
    info["equal_to_a_test_text"] = len(texts) - len(keep)
    used = {split_key(p) for p in prompts.train}
    keep.sort(key=lambda p: _rank(p, cfg.seed, used))
    head = cut_prompt(encode_prompt(tok, PROMPT), cfg.max_prompt_tokens, cfg.prompt_head_tokens)
    seqs = []
    for p in keep:
        ids = tok.encode(p.text, add_special_tokens=False)[: cfg.train_response_tokens]
        if ids:
            seqs.append((p, Seq(f"{ARM}:{p.id}", f"{ARM}_{lang}", tuple(head + ids), len(head),
                                ARM)))
    gone = {d["id"] for d in training_text_leaks([s for _, s in seqs], test, prompts.test,
                                                 decode)}
    info["text_check"] = len(gone)
    seqs = [(p, s) for p, s in seqs if s.id not in gone]
    info |= {"usable": len(seqs), "in_training_prompts_groups": sum(
        split_key(p) in used for p, _ in seqs), "used": 0}
    return seqs, info


def _own(own: dict, lang: str | None, why: str) -> dict:
    """A task that trains on its own sequences (``own``: their counts) in this arm."""
    return {"text": "own", "language": None, "fallback": why, "sources": None,
            "sequences": own["prompts"], "supervised_tokens": own["supervised_tokens"],
            "prompt_tokens": own["prompt_tokens"], "target_supervised_tokens": None,
            "reached": None, "ids": None, "wanted_language": lang}


def build(cfg: StudyConfig, tok, prompts: StudyPrompts, train: list[Seq], test: list[Seq],
          run_dir: Path, reader=monolingual) -> Monolingual:
    """The arm's training sequences: per task of ``cfg.tasks`` (in order) monolingual text in
    its output language reaching the supervised tokens of its sequences in ``train`` (the
    arms' training sequences), else its own; written to ``run_dir / monolingual.json``.
    ``reader(lang, mgsm=, faq=, reference=)``: the texts of a language
    (:func:`specfair.tasks.study.monolingual`)."""
    decode = lambda ids: tok.decode(list(ids), skip_special_tokens=True)  # noqa: E731
    own = counts(train, list(cfg.tasks))
    langs = {t: output_language(t) for t in cfg.tasks}
    pools: dict[str, deque] = {}
    info: dict[str, dict] = {}
    for lang in sorted({x for x in langs.values() if x}):
        pool, info[lang] = _pool(lang, cfg, tok, prompts, test, decode, reader)
        pools[lang] = deque(pool)
    seqs: list[Seq] = []
    tasks: dict[str, dict] = {}
    for t in cfg.tasks:
        lang, want = langs[t], own[t]["supervised_tokens"]
        pool = pools.get(lang) if lang else None
        if not pool:
            why = "not a translation into Chinese, Japanese or English"
            if lang:
                i = info[lang]
                why = (f"no usable {_LANGUAGE[lang]} text left ({i['read']} read, {i['usable']} "
                       f"usable, {i['used']} taken by the tasks before it"
                       + (f"; {i['note']}" if i["note"] else "") + ")")
            tasks[t] = _own(own[t], lang, why)
            seqs += [s for s in train if s.task == t]
            continue
        mine, have = [], 0
        while pool and have < want:
            p, s = pool.popleft()
            mine.append((p, Seq(s.id, t, s.ids, s.n_prompt, ARM)))
            have += s.n_resp
        info[lang]["used"] += len(mine)
        seqs += [s for _, s in mine]
        tasks[t] = {"text": ARM, "language": lang, "fallback": None,
                    "sources": dict(Counter(p.source for p, _ in mine)),
                    "sequences": len(mine), "supervised_tokens": have,
                    "prompt_tokens": sum(s.n_prompt for _, s in mine),
                    "target_supervised_tokens": want, "reached": have >= want,
                    "ids": [p.id for p, _ in mine], "wanted_language": lang}
    write_text(run_dir / FILE, json.dumps({"prompt": PROMPT_NOTE, "languages": info,
                                           "tasks": tasks}, indent=2, ensure_ascii=False))
    _say("the monolingual arm trains on: " + ", ".join(
        f"{t} {v['sequences']} {v['language']} texts / {v['supervised_tokens']} supervised "
        f"tokens (own {v['target_supervised_tokens']})" if v["text"] == ARM
        else f"{t} its own data" + (f" ({v['fallback']})" if v["wanted_language"] else "")
        for t, v in tasks.items()))
    return Monolingual(seqs, tasks)
