"""The per-task index of SuffixDecoding (:mod:`specfair.decoding.suffix`): each task's training
text as token ids, on disk and routed by task like a per-task drafter.

A directory written by :func:`build_index` (``specfair index build``)::

    index.json          the manifest: format, version, the tokenizer (name, vocabulary size and
                        hash), the suite, split and data hash, the responses files read, and per
                        task its file, sha256, sequence and token counts and their sources
    task<i>.safetensors one per task: ``tokens`` (int32, the sequences end to end) and
                        ``offsets`` (int64, where each sequence starts, then the total)

No pickle: the token ids are the file, and the suffix tree is rebuilt from them on load (a
concatenation and one argsort per task). The texts of a task: the target's answers to its
train-split prompts (``responses.jsonl`` files, :mod:`specfair.measure.responses`' schema, as
the experiment writes them) and the prompts' references, tokenized with the target's tokenizer.

:class:`TaskIndex` is the loaded directory: ``for_task(task)`` is the task's
:class:`~specfair.decoding.suffix.SuffixIndex` (None for a task without one), as a per-task
drafter's ``for_task`` is its copy; the caller picks the task as it picks the drafter's
(:func:`specfair.decoding.proposer.route_of`: the prompt's label, or the task router's route).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from specfair.atomic import atomic_dir
from specfair.decoding.suffix import SuffixIndex
from specfair.errors import SpecfairError
from specfair.models.weights import read_tensors_and_metadata
from specfair.schema import loads_json

INDEX_FILE = "index.json"
INDEX_FORMAT = "specfair-suffix-index"
INDEX_VERSION = 1


def vocab_hash(tokenizer) -> str:
    """sha256 of the tokenizer's vocabulary (token -> id), so that an index is read with the
    tokenizer that wrote it."""
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda kv: kv[1])
    return hashlib.sha256(json.dumps(vocab, ensure_ascii=True).encode()).hexdigest()


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def task_texts(prompts, tokenizer, responses: dict | None = None) -> dict[str, dict]:
    """Per task: ``seqs`` (token id lists) and ``from`` (counts per source) of ``prompts``:
    the target's answers in ``responses`` (``{(id, turn): record}``, as
    :func:`specfair.measure.responses.read_responses` gives; only those of these prompts) and
    the prompts' references (tokenized without special tokens)."""
    out: dict[str, dict] = {}
    by_id = {p.id: p for p in prompts}
    for p in prompts:
        out.setdefault(p.task, {"seqs": [], "from": {"responses": 0, "references": 0}})
    for (pid, _), rec in sorted((responses or {}).items()):
        p = by_id.get(pid)
        ids = rec.get("response_ids")
        if p is None or not ids:
            continue
        if not all(isinstance(t, int) and not isinstance(t, bool) and 0 <= t < 2**31
                   for t in ids):  # fmt: skip
            raise SpecfairError(f"responses of prompt {pid}: response_ids must be token ids "
                                "(integers >= 0)")
        out[p.task]["seqs"].append(list(ids))
        out[p.task]["from"]["responses"] += 1
    for p in prompts:
        if p.reference:
            ids = tokenizer.encode(p.reference, add_special_tokens=False)
            if ids:
                out[p.task]["seqs"].append(list(ids))
                out[p.task]["from"]["references"] += 1
    return out


def write_index(out: str | Path, texts: dict[str, dict], meta: dict) -> dict:
    """Write ``texts`` (:func:`task_texts`) as an index directory at ``out`` (replaced whole,
    atomically); ``meta``: the manifest's other fields. Returns the manifest."""
    from safetensors.numpy import save_file

    tasks = {}
    with atomic_dir(out) as tmp:
        for i, (task, t) in enumerate(sorted(texts.items())):
            lens = np.array([len(s) for s in t["seqs"]], dtype=np.int64)
            offsets = np.concatenate([[0], np.cumsum(lens)]).astype(np.int64)
            flat = [x for s in t["seqs"] for x in s]
            tokens = np.array(flat, dtype=np.int32)
            name = f"task{i}.safetensors"
            save_file({"tokens": tokens, "offsets": offsets}, str(tmp / name),
                      metadata={"task": task})
            tasks[task] = {"file": name, "sha256": _sha256(tmp / name), "sequences": len(lens),
                           "tokens": int(lens.sum()), "from": t["from"]}
        manifest = {"format": INDEX_FORMAT, "version": INDEX_VERSION, **meta, "tasks": tasks}
        (tmp / INDEX_FILE).write_text(json.dumps(manifest, indent=1) + "\n", encoding="utf-8")
    return manifest


def read_manifest(path: str | Path) -> dict:
    """The checked manifest of the index directory ``path``; any defect is one SpecfairError."""
    p = Path(path)
    f = p / INDEX_FILE
    if not p.is_dir():
        raise SpecfairError(f"index {p}: no such directory (write one with `specfair index "
                            "build`)")
    if not f.is_file():
        raise SpecfairError(f"index {p}: no {INDEX_FILE} (not an index directory)")
    try:
        doc = loads_json(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SpecfairError(f"index {f}: not a JSON file ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != INDEX_FORMAT:
        raise SpecfairError(f"index {f}: not a {INDEX_FORMAT} file (format key)")
    if doc.get("version") != INDEX_VERSION:
        raise SpecfairError(f"index {f}: version {doc.get('version')!r}, this specfair reads "
                            f"{INDEX_VERSION}")
    tasks = doc.get("tasks")
    if not isinstance(tasks, dict) or not tasks:
        raise SpecfairError(f"index {f}: no tasks")
    for task, t in tasks.items():
        name = t.get("file") if isinstance(t, dict) else None
        if (not isinstance(name, str) or Path(name).name != name or not name.endswith(
                ".safetensors") or not isinstance(t.get("sha256"), str)):  # fmt: skip
            raise SpecfairError(f"index {f}: task {task!r} needs a file name inside the index "
                                "and its sha256")
    return doc


def _load_task(root: Path, task: str, entry: dict, vocab: int | None) -> SuffixIndex:
    path = root / entry["file"]
    where = f"index {root}: task {task!r} ({entry['file']})"
    if not path.is_file():
        raise SpecfairError(f"{where}: no such file")
    if _sha256(path) != entry["sha256"]:
        raise SpecfairError(f"{where}: sha256 differs from {INDEX_FILE} (changed or damaged)")
    tensors, _ = read_tensors_and_metadata(path)
    tokens, offsets = tensors.get("tokens"), tensors.get("offsets")
    if tokens is None or offsets is None or tokens.dim() != 1 or offsets.dim() != 1:
        raise SpecfairError(f"{where}: needs 1-D tensors tokens and offsets")
    tokens, offsets = tokens.numpy().astype(np.int64), offsets.numpy().astype(np.int64)
    if (offsets.size < 1 or offsets[0] != 0 or offsets[-1] != tokens.size
            or (np.diff(offsets) < 0).any()):  # fmt: skip
        raise SpecfairError(f"{where}: offsets do not split the tokens")
    if tokens.size and (tokens.min() < 0 or (vocab is not None and tokens.max() >= vocab)):
        raise SpecfairError(f"{where}: token ids outside the vocabulary (0..{vocab})")
    return SuffixIndex.from_flat(tokens, offsets)


class TaskIndex:
    """A loaded index directory: per task its :class:`SuffixIndex`."""

    def __init__(self, path: str | Path, indexes: dict[str, SuffixIndex], manifest: dict):
        self.path, self.indexes, self.manifest = Path(path), indexes, manifest
        self.tasks = sorted(indexes)

    def for_task(self, task: str | None) -> SuffixIndex | None:
        """The index of ``task`` (None: none for it, or no task)."""
        return self.indexes.get(task) if task is not None else None

    def plain_models(self) -> list:
        return []

    def check_tokenizer(self, tokenizer) -> None:
        """Refuse a ``tokenizer`` other than the one that wrote the index."""
        if self.manifest.get("vocab_hash") != vocab_hash(tokenizer):
            raise SpecfairError(f"index {self.path}: written with another tokenizer "
                                f"({self.manifest.get('tokenizer')!r}); rebuild it with the "
                                "target's (`specfair index build --target ...`)")

    def settings(self) -> dict:
        """What a run records of it: the directory and each task file's sha256."""
        return {"index": str(self.path),
                "index_sha256": {t: e["sha256"] for t, e in self.manifest["tasks"].items()}}

    def __repr__(self) -> str:
        return f"TaskIndex({self.path}, tasks={self.tasks})"


def load_index(path: str | Path, tokenizer=None) -> TaskIndex:
    """The index directory ``path``, every task's file checked (manifest, sha256, shapes, ids)
    and, given the ``tokenizer`` drafts are decoded with, its vocabulary against the one that
    wrote the index."""
    doc = read_manifest(path)
    vocab = doc.get("vocab_size")
    if isinstance(vocab, bool) or not isinstance(vocab, int) or vocab < 1:
        raise SpecfairError(f"index {path}: {INDEX_FILE} needs vocab_size, an integer >= 1")
    root = Path(path)
    indexes = {t: _load_task(root, t, e, vocab) for t, e in doc["tasks"].items()}
    index = TaskIndex(root, indexes, doc)
    if tokenizer is not None:
        index.check_tokenizer(tokenizer)
    return index


def index_texts(out: str | Path, texts: dict[str, dict], tokenizer, *, tokenizer_name: str,
                meta: dict | None = None) -> dict:
    """Write ``texts`` (``{task: {"seqs": token id lists, "from": counts per source}}``, as
    :func:`task_texts` gives them) as the index directory ``out``, the manifest naming
    ``tokenizer`` (the one the ids are of); a task without text is listed, not written.
    Returns the manifest."""
    empty = sorted(t for t, x in texts.items() if not x["seqs"])
    if len(empty) == len(texts):
        raise SpecfairError("no text to index: the prompts have no references and no answers "
                            "in the responses files")
    texts = {t: x for t, x in texts.items() if x["seqs"]}
    top = max((max(s) for x in texts.values() for s in x["seqs"] if s), default=0)
    info = {"tokenizer": tokenizer_name, "vocab_size": max(len(tokenizer), top + 1),
            "vocab_hash": vocab_hash(tokenizer), "tasks_without_text": empty, **(meta or {})}
    return write_index(out, texts, info)


def build_index(out: str | Path, prompts, tokenizer, *, tokenizer_name: str,
                responses: dict | None = None, meta: dict | None = None) -> dict:
    """Tokenize the train-split ``prompts``' texts (:func:`task_texts`) and write the index
    directory ``out``; returns the manifest."""
    return index_texts(out, task_texts(prompts, tokenizer, responses), tokenizer,
                       tokenizer_name=tokenizer_name, meta=meta)
