"""The on-disk store of model signals per token sequence: the target's top-k log-probabilities at
the response positions (the teacher signal that distillation and acceptance estimates share),
and the frozen lower layers' hidden states of a drafter (for top-N-layer training).

A :class:`SignalStore` is a directory -- or, without one, memory (:func:`target_hidden`'s store of
the target's final hidden states, which the teacher-forced estimate and the LoRA/full trainer
share): ``meta.json`` (what was computed, with which settings),
``shard-NNNNNN.safetensors`` files (tensors of many sequences concatenated) and ``index.jsonl``
(one line per sequence: its key and where its rows are). Entries are keyed by the sha1 of the
token sequence and the response start, so a changed response is recomputed, never mixed up.
Writing is resumable: a shard is renamed into place before its index lines are appended, and a
torn last index line is ignored. No pickle: safetensors and JSON only.
"""

from __future__ import annotations

import hashlib
import json
import os
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from safetensors.torch import save_file

from specfair.atomic import atomic_file, open_append, open_nofollow, write_text
from specfair.errors import SpecfairError
from specfair.measure.io import read_json
from specfair.measure.progress import progress_bar
from specfair.models.finite import nonfinite
from specfair.models.weights import read_tensors
from specfair.schema import loads_json


def seq_key(ids: Sequence[int], n_prompt: int) -> str:
    h = hashlib.sha1(f"{n_prompt}:".encode())
    h.update(torch.tensor(list(ids), dtype=torch.int32).numpy().tobytes())
    return h.hexdigest()


class SignalStore:
    """Per-sequence tensors (rows concatenated per shard), keyed by :func:`seq_key`. With
    ``root=None`` the entries live in memory only, and all are dropped when they would exceed
    ``max_bytes``."""

    def __init__(self, root: str | Path | None, meta: dict,
                 max_bytes: int | None = None) -> None:
        self.meta = meta
        self._index: dict[str, dict] = {}
        self._shards: dict[str, dict[str, torch.Tensor]] = {}
        self._memory: dict[str, dict[str, torch.Tensor]] | None = None
        self.max_bytes, self._bytes = max_bytes, 0
        self._next = 0
        if root is None:
            self.root, self._memory = None, {}
            return
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        meta_path = self.root / "meta.json"
        if meta_path.is_file():
            old = read_json(meta_path)
            if not isinstance(old, dict):
                raise SpecfairError(f"{meta_path}: not a JSON object")
            if old != json.loads(json.dumps(meta)):
                diff = sorted(k for k in set(old) | set(meta) if old.get(k) != meta.get(k))
                raise SpecfairError(f"signal store {self.root} was made with other settings "
                                    f"({', '.join(diff)}); use another directory")
        else:
            write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True))
        idx = self.root / "index.jsonl"
        if idx.is_file():
            data = idx.read_bytes()
            if data and not data.endswith(b"\n"):  # a torn last line: cut off (its sequence
                fd = open_nofollow(idx, os.O_WRONLY)  # is recomputed), so that the next line
                try:  # appended starts a line of its own
                    os.ftruncate(fd, data.rfind(b"\n") + 1)
                finally:
                    os.close(fd)
            for line in data.decode("utf-8", "replace").splitlines():
                try:
                    rec = loads_json(line)
                except ValueError:
                    continue  # a torn last line: that sequence is recomputed
                if (self.root / rec["shard"]).is_file():
                    self._index[rec["key"]] = rec
        self._next = 1 + max((int(r["shard"][6:12]) for r in self._index.values()), default=-1)

    def __contains__(self, key: str) -> bool:
        return key in (self._index if self._memory is None else self._memory)

    def __len__(self) -> int:
        return len(self._index if self._memory is None else self._memory)

    def _remember(self, entries: Sequence[tuple[str, dict[str, torch.Tensor]]]) -> None:
        for key, t in entries:
            t = {n: v.detach().cpu().clone() for n, v in t.items()}
            size = sum(v.nbytes for v in t.values())
            if self.max_bytes is not None and self._bytes + size > self.max_bytes:
                self._memory.clear()
                self._bytes = 0
            self._memory[key] = t
            self._bytes += size

    def put(self, entries: Sequence[tuple[str, dict[str, torch.Tensor]]]) -> None:
        """Write one shard with these entries (``key``, ``{name: tensor [rows, ...]}``); in
        memory: keep a CPU copy of each."""
        if not entries:
            return
        if self._memory is not None:
            self._remember(entries)
            return
        name = f"shard-{self._next:06d}.safetensors"
        self._next += 1
        names = sorted(entries[0][1])
        tensors, recs, offs = {}, [], dict.fromkeys(names, 0)
        for key, t in entries:
            rec = {"key": key, "shard": name}
            for n in names:
                rec[n] = [offs[n], int(t[n].shape[0])]
                offs[n] += int(t[n].shape[0])
            recs.append(rec)
        for n in names:
            tensors[n] = torch.cat([t[n].contiguous().cpu() for _, t in entries])
        bad = nonfinite(tensors.items())
        if bad:  # a model that overflowed: nothing non-finite is cached
            raise SpecfairError(f"{self.root}: the {bad[0]} computed for {len(entries)} "
                                "sequence(s) hold NaN or infinite values; nothing was written")
        with atomic_file(self.root / name) as tmp:
            save_file(tensors, str(tmp))
        with open_append(self.root / "index.jsonl") as f:
            f.write("".join(json.dumps(r) + "\n" for r in recs))
        for r in recs:
            self._index[r["key"]] = r

    def get(self, key: str) -> dict[str, torch.Tensor]:
        if self._memory is not None:
            return self._memory[key]
        rec = self._index[key]
        shard = self._shards.get(rec["shard"])
        if shard is None:
            shard = self._shards[rec["shard"]] = read_tensors(self.root / rec["shard"])
        return {n: shard[n][a : a + k] for n, (a, k) in
                ((n, rec[n]) for n in shard)}

    def fill(self, items: Sequence[tuple[str, object]],
             compute: Callable[[list[object]], list[dict[str, torch.Tensor]]],
             batch: int = 8, progress: Callable[[int], None] | None = None) -> int:
        """Compute the missing ``(key, item)`` entries ``batch`` at a time (a shard each);
        returns how many were computed."""
        todo = [(k, it) for k, it in dict(items).items() if k not in self]
        for i in range(0, len(todo), batch):
            part = todo[i : i + batch]
            self.put(list(zip([k for k, _ in part], compute([it for _, it in part]),
                              strict=True)))
            if progress is not None:
                progress(len(part))
        return len(todo)


@torch.inference_mode()
def target_topk(target, seqs: Sequence[tuple[Sequence[int], int]], k: int) -> list[dict]:
    """For each ``(ids, n_prompt)``: the target's top-k log-probs at the positions that predict
    ``ids[n_prompt:]`` (``topk_idx`` int32 and ``topk_logp`` float32, ``[n_resp, k]``), from
    one forward pass per sequence (no padding, so an entry never depends on its batch)."""
    out = []
    dev = next(target.parameters()).device
    for ids, n_prompt in seqs:
        x = torch.tensor([list(ids)], device=dev)
        n_resp = len(ids) - n_prompt
        logits = target(input_ids=x, use_cache=False,
                        logits_to_keep=n_resp + 1).logits[0, :-1].float()
        logp = torch.log_softmax(logits, -1)
        val, idx = logp.topk(k, -1)
        out.append({"topk_idx": idx.to(torch.int32).cpu(), "topk_logp": val.cpu()})
    return out


# The target's final hidden states, one store per target model, in memory: every drafter variant
# is scored (estimate) or trained (trainer) against the same target along the same sequences, so
# the target's decoder -- the expensive forward -- runs once per sequence. A store is dropped
# when the target's parameters change in place (their version counters move).
_TARGET_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
TARGET_STATES_MAX_BYTES = 2 * 1024**3


def _params_version(model) -> int:
    return sum(p._version for p in model.parameters())


def target_states(target) -> SignalStore:
    """The in-memory store of ``target``'s final hidden states (what :func:`target_hidden`
    fills)."""
    version = _params_version(target)
    entry = _TARGET_STATES.get(target)
    if entry is None or entry[0] != version:
        store = SignalStore(None, {"kind": "target_hidden"}, max_bytes=TARGET_STATES_MAX_BYTES)
        entry = _TARGET_STATES[target] = (version, store)
    return entry[1]


def forget_target_states() -> None:
    _TARGET_STATES.clear()


@torch.inference_mode()
def target_hidden(target, ids: Sequence[int], n_prompt: int, *,
                  remember: bool = True) -> torch.Tensor:
    """``[len(ids) - n_prompt, H]`` float32 (CPU): the target's final hidden states at the
    positions that predict ``ids[n_prompt:]``, from one forward of its decoder over ``ids[:-1]``
    (no padding, so a value never depends on a batch). Remembered in :func:`target_states`
    (``remember=False``: computed only, e.g. for a one-off sampled sequence). float32 holds the
    model's bf16 values exactly, so a cast back to the model's dtype loses nothing."""
    key = seq_key(ids, n_prompt)
    store = target_states(target)
    if key in store:
        return store.get(key)["hidden"]
    dev = next(target.parameters()).device
    x = torch.tensor([list(ids)[:-1]], device=dev)
    h = target.get_decoder()(input_ids=x, use_cache=False).last_hidden_state[0, n_prompt - 1:]
    h = h.float().cpu()
    if remember:
        store.put([(key, {"hidden": h})])
    return h


@torch.inference_mode()
def lower_hidden(drafter, seqs: Sequence[tuple[Sequence[int], int]], layer: int) -> list[dict]:
    """The drafter's hidden states entering decoder layer ``layer`` (``[len(ids), H]``, bf16)."""
    out = []
    dev = next(drafter.parameters()).device
    for ids, _ in seqs:
        x = torch.tensor([list(ids)], device=dev)
        h = drafter.model(input_ids=x, use_cache=False, output_hidden_states=True)
        out.append({"hidden": h.hidden_states[layer][0].to(torch.bfloat16).cpu()})
    return out


def signal_stores(root: str | Path, *, target: str, drafter: str, topk: int,
                  layer: int) -> tuple[SignalStore, SignalStore]:
    """The two stores under ``root``: the target's top-``topk`` (``target-topK``) and the
    drafter's hidden states entering layer ``layer`` (``drafter-hiddenL``)."""
    root = Path(root)
    return (SignalStore(root / f"target-top{topk}",
                        {"kind": "target_topk", "model": target, "k": topk}),
            SignalStore(root / f"drafter-hidden{layer}",
                        {"kind": "lower_hidden", "model": drafter, "layer": layer}))


@torch.inference_mode()
def topk_of_states(target, hidden: torch.Tensor, k: int) -> dict:
    """:func:`target_topk`'s entry from the target's final hidden states at the same positions
    (:func:`target_hidden`, stored float32 copies of the model's values): its output head
    applied again, no decoder pass."""
    head = target.get_output_embeddings()
    logits = head(hidden.to(head.weight.dtype).to(head.weight.device)).float()
    val, idx = torch.log_softmax(logits, -1).topk(k, -1)
    return {"topk_idx": idx.to(torch.int32).cpu(), "topk_logp": val.cpu()}


def _same_teacher(a: dict, b: dict) -> bool:
    """Two top-k entries of one sequence agree as two forwards of one model do (the argmax on
    >= 95 % of the positions, its log-prob within 0.05 on average): a target whose logits
    are not its output head's product with its final states (a soft cap, a scale) fails."""
    top = (a["topk_idx"][:, 0] == b["topk_idx"][:, 0]).float().mean().item()
    gap = (a["topk_logp"][:, 0] - b["topk_logp"][:, 0]).abs().mean().item()
    return top >= 0.95 and gap <= 0.05


def _teacher(target, topk: int, final: SignalStore | None):
    """The teacher's compute for :func:`fill_signals`: from ``final``'s stored states where it
    holds the sequence (checked once against a forward, see :func:`_same_teacher`), else one
    forward per sequence."""
    checked: list[bool] = []

    def compute(batch):
        out = []
        for ids, n in batch:
            key = seq_key(ids, n)
            if final is None or key not in final or checked == [False]:
                out.extend(target_topk(target, [(ids, n)], topk))
                continue
            entry = topk_of_states(target, final.get(key)["hidden"], topk)
            if not checked:
                forward = target_topk(target, [(ids, n)], topk)[0]
                checked.append(_same_teacher(entry, forward))
                entry = forward
            out.append(entry)
        return out
    return compute


def fill_signals(target, drafter, items: Sequence[tuple[str, tuple[Sequence[int], int]]],
                 root: str | Path, *, target_name: str, drafter_name: str, topk: int,
                 layer: int, final: SignalStore | None = None
                 ) -> tuple[SignalStore, SignalStore]:
    """Score every ``(key, (ids, n_prompt))`` not yet stored under ``root`` (resumable, a shard
    per batch, progress bars): the teacher's top-k and the drafter's frozen lower hidden states.
    The only target forward passes that top-N-layer distillation needs; a sequence whose final
    states ``final`` already holds (:func:`fill_target_final`: the test sequences) takes its
    top-k from them through the output head, without a second decoder pass."""
    teacher, lower = signal_stores(root, target=target_name, drafter=drafter_name, topk=topk,
                                   layer=layer)
    for store, label, compute, batch in (
            (teacher, "target top-k", _teacher(target, topk, final), 8),
            (lower, "drafter lower layers", lambda b: lower_hidden(drafter, b, layer), 32)):
        missing = sum(k not in store for k, _ in dict(items).items())
        with progress_bar(missing, label) as advance:
            store.fill(items, compute, batch=batch,
                       progress=lambda n, adv=advance: [adv() for _ in range(n)])
    return teacher, lower


def fill_target_final(target, items: Sequence[tuple[str, tuple[Sequence[int], int]]],
                      root: str | Path, *, target_name: str) -> SignalStore:
    """The target's final hidden states (:func:`target_hidden`: ``[len(ids) - n_prompt, H]``
    float32) for every ``(key, (ids, n_prompt))`` not yet stored under ``root /
    "target-final"`` (resumable): with the target's output head they give its full-vocabulary
    distributions again without the model, for exact alpha and cross-entropy."""
    store = SignalStore(Path(root) / "target-final",
                        {"kind": "target_final_hidden", "model": target_name})
    missing = sum(k not in store for k, _ in dict(items).items())
    with progress_bar(missing, "target final states") as advance:
        store.fill(items, lambda b: [{"hidden": target_hidden(target, ids, n, remember=False)}
                                     for ids, n in b],
                   batch=8, progress=lambda n: [advance() for _ in range(n)])
    return store
