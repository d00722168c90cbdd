"""Read an experiment run directory into plain dicts and pandas DataFrames.

Nothing here raises on a missing or unreadable file: each :class:`Arm` records which of its
files exist (``present``) and what went wrong (``notes``), and the report shows both.
A missing ``*_summary.json`` next to an existing ``*.jsonl`` is recomputed from the records
with :mod:`specfair.measure.bench_summary` / :mod:`specfair.measure.estimate_summary` (the
estimate needs the cost ratio ``c``: taken from any other estimate summary of the run, else
left out, so predicted speed-ups are then unknown).
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from specfair.measure.bench_summary import summarize_bench
from specfair.measure.estimate_summary import summarize_estimate

BENCH_RECORDS = "bench.jsonl"
BENCH_SUMMARY = "bench_summary.json"
ESTIMATE_RECORDS = "estimate.jsonl"
ESTIMATE_SUMMARY = "estimate_summary.json"
TRAIN_LOG = "train_log.jsonl"
ARM_FILES = (BENCH_RECORDS, BENCH_SUMMARY, ESTIMATE_RECORDS, ESTIMATE_SUMMARY, TRAIN_LOG)
BASELINE = "baseline"
# the usual variants, shown in this order (others follow alphabetically)
KNOWN_VARIANTS = ("uniform", "balanced", "disparity", "per-task")


def num(x) -> float:
    """A float, or nan for None / non-numbers (JSON writes nan as null)."""
    if isinstance(x, bool) or x is None:
        return float("nan")
    try:
        return float(x)
    except (TypeError, ValueError):
        return float("nan")


def finite(x) -> bool:
    return math.isfinite(num(x))


@dataclass
class Arm:
    """One drafter: the baseline or a fine-tuned variant."""

    name: str
    path: Path
    present: dict[str, bool] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    bench_summary: dict | None = None
    estimate_summary: dict | None = None
    bench: pd.DataFrame | None = None
    estimate: pd.DataFrame | None = None
    train_log: list[dict] = field(default_factory=list)

    @property
    def is_baseline(self) -> bool:
        return self.name == BASELINE

    @property
    def has_bench(self) -> bool:
        return bool(self.bench_summary and self.bench_summary.get("tasks"))

    @property
    def has_estimate(self) -> bool:
        return bool(self.estimate_summary and self.estimate_summary.get("tasks"))

    @property
    def gamma(self) -> int | None:
        g = (self.bench_summary or {}).get("meta", {}).get("gamma")
        return g if isinstance(g, int) and not isinstance(g, bool) else None

    @property
    def c(self) -> float | None:
        c = (self.estimate_summary or {}).get("meta", {}).get("c")
        return float(c) if finite(c) else None


@dataclass
class Run:
    run_dir: Path
    config: dict
    environment: dict
    baseline: Arm | None
    variants: dict[str, Arm]
    notes: list[str] = field(default_factory=list)

    @property
    def arms(self) -> list[Arm]:
        return ([self.baseline] if self.baseline else []) + list(self.variants.values())

    def tasks(self) -> list[str]:
        """All tasks in first-seen order (baseline first; bench before estimate)."""
        out: dict[str, None] = {}
        for arm in self.arms:
            for s in (arm.bench_summary, arm.estimate_summary):
                for t in (s or {}).get("tasks", {}) or {}:
                    out.setdefault(t, None)
        return list(out)


def _read_json(path: Path, notes: list[str]) -> dict | None:
    if not path.exists():
        return None
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        notes.append(f"{path.name}: unreadable ({e.__class__.__name__}: {e}); ignored")
        return None
    if not isinstance(obj, dict):
        notes.append(f"{path.name}: not a JSON object; ignored")
        return None
    return obj


def _read_jsonl(path: Path, notes: list[str]) -> list[dict]:
    """Records of a JSONL file; unparsable lines are skipped (and counted in ``notes``)."""
    if not path.exists():
        return []
    out, bad = [], 0
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        notes.append(f"{path.name}: unreadable ({e}); ignored")
        return []
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            bad += 1
            continue
        if isinstance(rec, dict):
            out.append(rec)
        else:
            bad += 1
    if bad:
        notes.append(f"{path.name}: skipped {bad} unparsable line(s)")
    return out


def _frame(records: list[dict], drop: tuple[str, ...] = ()) -> pd.DataFrame | None:
    if not records:
        return None
    return pd.DataFrame([{k: v for k, v in r.items() if k not in drop} for r in records])


def load_arm(name: str, path: Path, c_fallback: float | None = None) -> Arm:
    arm = Arm(name=name, path=path)
    arm.present = {f: (path / f).is_file() for f in ARM_FILES}
    if not path.is_dir():
        arm.notes.append(f"directory {path.name}/ is missing")
        return arm
    arm.bench_summary = _read_json(path / BENCH_SUMMARY, arm.notes)
    arm.estimate_summary = _read_json(path / ESTIMATE_SUMMARY, arm.notes)
    bench_recs = _read_jsonl(path / BENCH_RECORDS, arm.notes)
    est_recs = _read_jsonl(path / ESTIMATE_RECORDS, arm.notes)
    arm.bench = _frame(bench_recs, drop=("tokens", "accepted_lengths"))
    arm.estimate = _frame(est_recs)
    arm.train_log = _read_jsonl(path / TRAIN_LOG, arm.notes)
    if arm.bench_summary is None and bench_recs:
        arm.bench_summary = _recompute(arm, "bench", bench_recs, None)
    if arm.estimate_summary is None and est_recs:
        arm.estimate_summary = _recompute(arm, "estimate", est_recs, c_fallback)
    return arm


def _recompute(arm: Arm, kind: str, records: list[dict], c: float | None) -> dict | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if kind == "bench":
                s = summarize_bench(records, n_resamples=1000)
            else:
                s = summarize_estimate(records, c=c, n_resamples=1000)
    except Exception as e:  # a record the summariser rejects must not stop the report
        arm.notes.append(f"{kind}_summary.json missing and could not be recomputed ({e})")
        return None
    extra = "" if kind == "bench" or c is not None else " (no cost ratio c: no speed-ups)"
    arm.notes.append(f"{kind}_summary.json missing: recomputed from {kind}.jsonl{extra}")
    return s


def _variant_order(names: list[str], config: dict) -> list[str]:
    wanted: list[str] = []
    cv = config.get("variants")
    if isinstance(cv, dict):
        wanted = [str(k) for k in cv]
    elif isinstance(cv, list):
        for v in cv:
            n = v.get("name") if isinstance(v, dict) else v
            if isinstance(n, str):
                wanted.append(n)
    order = {n: i for i, n in enumerate(wanted + [k for k in KNOWN_VARIANTS if k not in wanted])}
    return sorted(names, key=lambda n: (order.get(n, len(order)), n))


def load_run(run_dir: str | Path) -> Run:
    """Everything the report needs from ``run_dir`` (see :mod:`specfair.report`)."""
    run_dir = Path(run_dir)
    notes: list[str] = []
    config = _read_json(run_dir / "config.json", notes) or {}
    environment = _read_json(run_dir / "environment.json", notes) or {}
    for f in ("config.json", "environment.json"):
        if not (run_dir / f).is_file():
            notes.append(f"{f} is missing")
    # cost ratio for recomputing an estimate summary: the first one found in the run
    c = None
    candidates = [run_dir / BASELINE] + sorted((run_dir / "variants").glob("*"))
    for d in candidates:
        s = _read_json(d / ESTIMATE_SUMMARY, [])
        if s and finite(s.get("meta", {}).get("c")):
            c = float(s["meta"]["c"])
            break
    baseline = None
    if (run_dir / BASELINE).is_dir():
        baseline = load_arm(BASELINE, run_dir / BASELINE, c)
    else:
        notes.append("baseline/ is missing: no before/after comparison is possible")
    vdir = run_dir / "variants"
    names = [p.name for p in vdir.iterdir() if p.is_dir()] if vdir.is_dir() else []
    if not names:
        notes.append("no variants/<name>/ directories")
    variants = {n: load_arm(n, vdir / n, c) for n in _variant_order(names, config)}
    return Run(run_dir, config, environment, baseline, variants, notes)
