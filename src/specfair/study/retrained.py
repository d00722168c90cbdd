"""A trained copy trained again from the start while records of it exist, checked against
them (``retrained.json``).

A run directory continued on another machine (or in a later session on a fresh one) is rebuilt
from its committed records; the copies' checkpoints (``arms/**/checkpoint/``) and the exports
(``drafters/``) are not kept. Where a stage needs a copy's weights -- the timed stage's export
of an arm's drafter, the routing stage's per-task copies -- and the checkpoint is gone, the copy
is trained again from the start with the same seed and settings
(:func:`specfair.study.arms.top_at_largest`); so is a copy whose checkpoint is gone while
records of its larger budgets are missing (:mod:`specfair.study.arms`). Training is seeded and
the training loop draws no other randomness, so on the same CPU kind the copy is the same one
bit for bit; on another CPU kind (other bf16 or fp32 kernels) it may differ slightly.

Each such training is checked at the largest budget it trains again whose records are stored
(:func:`check`): the copy re-evaluated on the first :data:`PER_TASK` test sequences of each task,
in the batches they were evaluated in (the padded shapes of
:func:`specfair.distill.topn.evaluate`), against the stored records (``alpha``, ``greedy``,
``ce``, ``alpha_lo``: max |Δ| each); the weights' digest against the one the first training
recorded (``weights.jsonl``, one line per budget); the losses of its training log
(``retrain_log.jsonl``) against ``train_log.jsonl`` step by step where the records were all
there; the CPU against the first training's (``train_machines.json``, else ``costs.json``'s,
the run's first session). ``retrained.json`` says ``equal`` (Δ 0 everywhere), ``within
tolerance`` (|Δ alpha| <= :data:`TOLERANCE`) or ``differs``; the run goes on either way, and
the timed stage's ``timed.json`` and the report say when a timed drafter was retrained and
differs (:func:`for_arm`).
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from pathlib import Path

import torch

from specfair.distill.topn import EVAL_BATCH
from specfair.measure.io import notice, read_json, read_jsonl, write_json
from specfair.measure.progress import say
from specfair.models.hardware import cpu_name, machine

FILE = "retrained.json"
LOG = "retrain_log.jsonl"  # the training log of a copy trained again for its weights only
WEIGHTS = "weights.jsonl"  # per budget the digest of the weights its records were made with
MACHINES = "train_machines.json"  # each session that trained the copy: its machine
PER_TASK = 8  # test sequences of each task re-evaluated (with their evaluation batches)
METRICS = ("alpha", "greedy", "ce", "alpha_lo")
TOLERANCE = 1e-3  # max |Δ alpha| of a copy "within tolerance"
EQUAL, WITHIN, DIFFERS = "equal", "within tolerance", "differs"

_say = functools.partial(say, "study")


def digest(top) -> str:
    """sha256 of a copy's weights: every tensor of its state dict, by name, with its dtype and
    shape (bit for bit: equal digests are the same weights)."""
    h = hashlib.sha256()
    for name, t in sorted(top.state_dict().items()):
        t = t.detach().contiguous().cpu()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def note_machine(adir: Path, step: int, retrain: bool) -> None:
    """Add this session's machine to the copy's ``train_machines.json`` (training starts or
    resumes at ``step``; ``retrain``: trained again while records of it exist)."""
    path = adir / MACHINES
    got = read_json(path) if path.is_file() else []
    write_json(path, [*got, machine() | {"step": step, "retrain": retrain, "time": time.time()}])


def original_machine(run_dir: Path, adir: Path) -> dict:
    """The CPU and threads the copy's first training ran on: its ``train_machines.json``
    (sessions not retraining), else ``costs.json``'s (the run's first session; runs made before
    the machines were recorded), else unknown."""
    path = adir / MACHINES
    ms = [m for m in (read_json(path) if path.is_file() else []) if not m.get("retrain")]
    if ms:
        return {"cpu": "; ".join(dict.fromkeys(m["cpu"] for m in ms)),
                "torch_threads": sorted({m.get("torch_threads") for m in ms} - {None}),
                "from": MACHINES}
    costs = run_dir / "costs.json"
    c = read_json(costs) if costs.is_file() else {}
    if c.get("cpu"):
        return {"cpu": c["cpu"], "torch_threads": [c["threads"]] if c.get("threads") else [],
                "from": "costs.json (the run's first session; the copy's own was not recorded)"}
    return {"cpu": None, "torch_threads": [], "from": None}


def subset(seqs: list) -> list[list]:
    """The evaluation batches of ``seqs`` (as :func:`specfair.distill.topn.evaluate` forwarded
    them, :data:`EVAL_BATCH` at a time in order) that hold each task's first
    :data:`PER_TASK` sequences."""
    idx: dict[str, list[int]] = {}
    for i, s in enumerate(seqs):
        idx.setdefault(s.task, []).append(i)
    picked = sorted({i // EVAL_BATCH for ids in idx.values() for i in ids[:PER_TASK]})
    return [seqs[k * EVAL_BATCH:(k + 1) * EVAL_BATCH] for k in picked]


def _loss(adir: Path, step: int) -> dict | None:
    """The retraining's losses (``retrain_log.jsonl``) against the first training's
    (``train_log.jsonl``) at the same steps, up to ``step``."""
    old = {r["step"]: r["loss"] for r in read_jsonl(adir / "train_log.jsonl")}
    new = {r["step"]: r["loss"] for r in read_jsonl(adir / LOG) if r["step"] <= step}
    common = sorted(set(old) & set(new))
    if not common:
        return None
    return {"steps": len(common), "of": len(new),
            "max_abs_diff": max(abs(new[k] - old[k]) for k in common)}


def check(run, adir: Path, name: str, top, seqs: list, budget: float, seed: int, step: int,
          why: str, log: bool) -> dict:
    """Compare copy ``name`` (``top``, trained again to ``budget``, ``step``) with its stored
    records (``<adir>/eval.jsonl``) on :func:`subset` of its test sequences ``seqs``; write
    ``<adir>/retrained.json`` (an earlier one kept under ``earlier``) and say how it went.
    ``log``: compare the losses too (``retrain_log.jsonl`` beside an untouched
    ``train_log.jsonl``)."""
    stored = {r["id"]: r for r in read_jsonl(adir / "eval.jsonl")
              if r["budget"] == budget and r.get("seed", seed) == seed}
    new = [r for chunk in subset(seqs) for r in run.eval_records(top, chunk, exact=False)
           if r["id"] in stored]
    diff = {m: max((abs(r[m] - stored[r["id"]][m]) for r in new if m in stored[r["id"]]),
                   default=None) for m in METRICS}
    sha = digest(top)
    orig_sha = next((r["sha256"] for r in read_jsonl(adir / WEIGHTS)
                     if r["budget"] == budget), None)
    loss = _loss(adir, step) if log else None
    orig = original_machine(run.dir, adir)
    known = [v for v in diff.values() if v is not None]
    if not new:
        status = "unchecked"
    elif all(v == 0 for v in known) and orig_sha in (None, sha) \
            and (loss is None or loss["max_abs_diff"] == 0):  # fmt: skip
        status = EQUAL
    else:
        status = WITHIN if (diff["alpha"] or 0.0) <= TOLERANCE else DIFFERS
    entry = {
        "copy": name, "why": why, "status": status, "budget": budget, "seed": seed,
        "step": step, "n_compared": len(new),
        "compared": f"the first {PER_TASK} test sequences of each task, in the batches of "
                    f"{EVAL_BATCH} they were evaluated in, at budget {budget}",
        "max_abs_diff": diff, "tolerance": {"alpha": TOLERANCE},
        "weights_sha256": sha, "original_weights_sha256": orig_sha,
        "same_weights": None if orig_sha is None else orig_sha == sha, "loss": loss,
        "cpu": cpu_name(), "torch_threads": torch.get_num_threads(),
        "original_cpu": orig["cpu"], "original_torch_threads": orig["torch_threads"],
        "original_cpu_from": orig["from"], "time": time.time()}
    path = adir / FILE
    if path.is_file():
        old = read_json(path)
        entry["earlier"] = [*old.pop("earlier", []), old]
    write_json(path, entry)
    where = f"{len(new)} test records at budget {budget}"
    if status == EQUAL:
        _say(f"{name}: trained again from the start (its checkpoint was not kept): the same "
             f"drafter ({where}: Δ 0"
             + (", the same weights" if entry["same_weights"] else "") + ")")
    else:
        notice(f"{name}: trained again from the start (its checkpoint was not kept) on "
               f"{entry['cpu']} (first trained on {orig['cpu'] or 'an unrecorded CPU'}): "
               f"{status} from its records ({where}: max |Δ alpha| "
               f"{_g(diff['alpha'])}, |Δ greedy| {_g(diff['greedy'])}, |Δ ce| "
               f"{_g(diff['ce'])}); the run goes on with it ({os.path.relpath(path, run.dir)})")
    return entry


def _g(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3g}"


def copy_dirs(run_dir: Path, arm: str, tasks: list[str]) -> dict[str, Path]:
    """``{copy name: directory}`` of an arm's first-seed copies (``per-task``: one a task)."""
    root = run_dir / "arms" / arm
    return {f"{arm}/{t}": root / t for t in tasks} if arm == "per-task" else {arm: root}


def for_arm(run_dir: Path, arm: str, tasks: list[str]) -> dict | None:
    """An arm's timed drafter as retrained (None: none of its copies was): the worst status
    of its copies (``differs`` > ``within tolerance`` > ``equal``), the max |Δ| per metric
    over them, when the first was retrained (``time``) and per copy its latest
    ``retrained.json`` in short."""
    got = {c: read_json(d / FILE) for c, d in copy_dirs(run_dir, arm, tasks).items()
           if (d / FILE).is_file()}
    if not got:
        return None
    order = [EQUAL, "unchecked", WITHIN, DIFFERS]
    worst = max((e["status"] for e in got.values()), key=order.index)
    first = min(x["time"] for e in got.values() for x in [*e.get("earlier", []), e])
    keys = ("status", "max_abs_diff", "n_compared", "same_weights", "cpu", "original_cpu",
            "budget", "time")
    return {"status": worst, "differs": worst == DIFFERS,
            "max_abs_diff": {m: max((e["max_abs_diff"][m] for e in got.values()
                                     if e["max_abs_diff"].get(m) is not None), default=None)
                             for m in METRICS},
            "first_time": first,
            "copies": {c: {k: e.get(k) for k in keys} for c, e in got.items()}}
