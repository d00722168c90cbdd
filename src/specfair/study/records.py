"""Resume by item: what an append-only record file of the experiment holds, and what it owes.

Every record file a stage appends to (``eval.jsonl``, ``policy_eval.jsonl``, an arm's own
``eval.jsonl`` / ``policy_eval.jsonl`` / ``train_log.jsonl``, ``routing/eval.jsonl``,
``methods/eval.jsonl`` / ``train.jsonl``) is read through :class:`Records`: a record's item is
its ``key`` (e.g. (arm, budget, seed, prompt id)); a stage asks which of the items it owes are
missing (:meth:`Records.lacks`), computes what it must, and appends only those
(:meth:`Records.append`). So a kill anywhere leaves a prefix that the rerun completes, item
by item, to the records of an uninterrupted run:

* a torn last line (a kill mid-write) is cut off the file (:func:`read_jsonl` ``repair``)
  and its item is owed again;
* one key is never written twice: a key already held, or twice in one write, is skipped; a
  file that holds a key twice (made by an older specfair) keeps the first record of each key
  and is rewritten without the others, with a notice.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Hashable, Iterable, Sequence
from pathlib import Path

from specfair.measure.io import append_jsonl, notice, read_jsonl

Key = Callable[[dict], Hashable]


def eval_key(r: dict) -> tuple:
    """An evaluation record's item: (arm, budget, seed, prompt id); an arm's own files have
    no ``arm`` (None), the base drafter's records and older runs' no ``seed`` (0)."""
    return r.get("arm"), r["budget"], r.get("seed", 0), r["id"]


class Records:
    """An append-only JSONL file of records keyed by ``key``, read once (repaired and
    de-duplicated as the module says), then appended to through :meth:`append`."""

    def __init__(self, path: str | Path, key: Key = eval_key) -> None:
        self.path, self.key = Path(path), key
        recs = read_jsonl(self.path, repair=True)
        self.held: dict[Hashable, dict] = {}
        for r in recs:
            self.held.setdefault(key(r), r)
        if len(self.held) < len(recs):
            notice(f"{self.path}: {len(recs) - len(self.held)} record(s) of a key already "
                   "held dropped (the first record of each key kept)")
            self._rewrite()

    def lacks(self, seqs: Iterable, **tags) -> list:
        """The items of ``seqs`` (anything with an ``id``) under ``tags`` not held yet."""
        return [s for s in seqs if self.key(tags | {"id": s.id}) not in self.held]

    def append(self, records: Sequence[dict]) -> int:
        """Append, in order, the records whose key is not held yet; returns how many."""
        n = 0
        for r in records:
            k = self.key(r)
            if k not in self.held:
                append_jsonl(self.path, r)
                self.held[k] = r
                n += 1
        return n

    def keep(self, pred: Callable[[dict], bool]) -> None:
        """Drop the records ``pred`` rejects (rewriting the file when there are any): records
        a resume redoes, e.g. training steps past the checkpoint it resumes from."""
        gone = [k for k, r in self.held.items() if not pred(r)]
        for k in gone:
            del self.held[k]
        if gone:
            self._rewrite()

    def _rewrite(self) -> None:
        """Replace the file by the records held (a temporary file renamed over it: a kill
        leaves the old file or the new one; a symlink there is replaced, never followed)."""
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp",
                                   dir=self.path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.writelines(json.dumps(r, separators=(",", ":")) + "\n"
                             for r in self.held.values())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        finally:
            Path(tmp).unlink(missing_ok=True)
