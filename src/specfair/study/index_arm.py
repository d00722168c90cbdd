"""The experiment's index arm (issue 30): the fine-tuning arms' training text put to its other
use, SuffixDecoding drafts from each task's text at no model cost, teacher-forced on the same
test sequences.

1. one index per training set (``indexes/<name>/``, :mod:`specfair.drafters.index`'s format,
   a ``specfair bench --proposer suffix:DIR`` argument as it is): ``index``, of the sequences
   the arms train on (:func:`specfair.study.dose.arms_train`), and ``index@<point>`` for each
   point of the data dose (:func:`specfair.study.dose.subset`: the sequences the dose arm
   trains on at that point); each task's index holds the training texts (the response
   positions: the supervised tokens) of its training sequences, nothing else;
2. per index and test sequence, along the target's answer, each position's SuffixDecoding
   draft from the request's tokens and the task's index (oracle routing: the prompt's task),
   and prompt lookup's there (:func:`specfair.measure.replay.text_drafts`: the draft's length,
   how much of it the answer continues with, which tree drafted it): ``indexes/eval.jsonl``,
   one record per (index, prompt), appended a prompt at a time (resumable by item,
   :class:`specfair.study.records.Records`); no model runs;
3. ``same_data.json`` (:func:`specfair.study.same_data.summarize_same_data`, from the records
   alone): the index, the fine-tuned drafter and both together, replayed on the same passes.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections import Counter
from pathlib import Path

from specfair.drafters.index import INDEX_FILE, index_texts, load_index, read_manifest
from specfair.errors import SpecfairError
from specfair.measure.progress import progress_bar, say
from specfair.measure.replay import text_drafts
from specfair.study.data import Seq
from specfair.study.dose import arms_train, dose_name, subset
from specfair.study.records import Records
from specfair.study.same_data import ARM, EVALS, INDEXES, summarize_same_data

_say = functools.partial(say, "index")


def index_points(cfg) -> list[tuple[str, float | int | None]]:
    """``(name, dose point)`` of each index: ``index`` (the arms' training text, point None),
    then ``index@<point>`` for each point of the data dose."""
    return [(ARM, None)] + [(dose_name(ARM, p), p) for p in cfg.dose_points]


def training_text(seqs: list[Seq], tasks: list[str]) -> dict[str, dict]:
    """Per task its training sequences' texts as trained on (the response positions, the
    supervised tokens) and their sources (reference, target, drafter): the index's input."""
    out = {t: {"seqs": [], "from": {}} for t in tasks}
    for s in seqs:
        if s.n_resp > 0:
            out[s.task]["seqs"].append(list(s.ids[s.n_prompt:]))
    for t in tasks:
        out[t]["from"] = dict(Counter(s.text_source for s in seqs if s.task == t and s.n_resp))
    return out


def _digest(texts: dict[str, dict]) -> str:
    return hashlib.sha256(json.dumps({t: x["seqs"] for t, x in sorted(texts.items())})
                          .encode()).hexdigest()


def build(run, name: str, seqs: list[Seq]):
    """The index of ``seqs`` at ``indexes/<name>``: loaded where it holds these texts (its
    manifest's ``texts_sha256``), else written first."""
    path = run.dir / INDEXES / name
    texts = training_text(seqs, list(run.cfg.tasks))
    digest = _digest(texts)
    if not ((path / INDEX_FILE).is_file() and read_manifest(path).get("texts_sha256") == digest):
        if path.exists() and not (path / INDEX_FILE).is_file():
            raise SpecfairError(f"{path}: not an index directory (remove it to rebuild)")
        index_texts(path, texts, run.tok, tokenizer_name=run.cfg.target,
                    meta={"study": run.cfg.name, "index": name, "texts_sha256": digest,
                          "text": "the training sequences' response positions (supervised "
                                  "tokens)"})
        m = read_manifest(path)
        _say(f"{name}: {sum(e['sequences'] for e in m['tasks'].values())} training texts, "
             f"{sum(e['tokens'] for e in m['tasks'].values())} tokens -> {path}")
    return load_index(path, run.tok)


def stage_index(run) -> Path | None:
    """Build every index, append the records ``indexes/eval.jsonl`` lacks, write
    ``same_data.json``; returns its path (None when ``index_arm`` is off)."""
    cfg = run.cfg
    if not cfg.index_arm:
        return None
    (run.dir / INDEXES).mkdir(exist_ok=True)
    recs = Records(run.dir / INDEXES / EVALS, key=lambda r: (r["index"], r["id"]))
    for name, point in index_points(cfg):
        owed = recs.lacks(run.test, index=name)
        if not owed:
            continue
        seqs = arms_train(run.train, cfg) if point is None else subset(run.train, cfg, point)
        index = build(run, name, seqs)
        sizes = index.manifest["tasks"]
        t0 = time.perf_counter()
        with progress_bar(len(owed), f"index {name}: drafts along the test answers") as advance:
            for s in owed:
                prompt, answer = s.ids[: s.n_prompt], s.ids[s.n_prompt:]
                size = sizes.get(s.task, {})
                rec = {"index": name, "point": point, "id": s.id, "task": s.task,
                       "group": run.groups.get(s.id), "index_sequences": size.get("sequences", 0),
                       "index_tokens": size.get("tokens", 0)}
                rec |= text_drafts(prompt, answer, "suffix", index.for_task(s.task)).to_record(
                    "suffix")
                rec |= text_drafts(prompt, answer, "ngram").to_record("lookup")
                recs.append([rec])
                advance(s.id)
        _say(f"{name}: drafted along {len(owed)} test answers "
             f"({time.perf_counter() - t0:.0f} s)")
    return summarize_same_data(run.dir, cfg)
