"""``bench_summary.json``: a ``bench.jsonl`` summarized per task, with bootstrap CIs.

Bootstrap: percentile, 2000 resamples, 95 %, seed 0 by default; the resampled unit is the
prompt (a prompt's AR and SD records, or its estimate sums, move together). "overall" pools
all prompts of all tasks (so tasks with more prompts weigh more). The estimate summary
(:mod:`specfair.measure.estimate_summary`) follows the same rules.

Per-task quantities in ``bench_summary.json`` (formulas in :mod:`specfair.measure.metrics`):

* ``speedup``      = mean SD tok/s ÷ mean AR tok/s (Spec-Bench), CI by joint resampling;
* ``speedup_tokw`` = (Σ SD tokens / Σ SD s) ÷ (Σ AR tokens / Σ AR s);
* ``alpha``        = Σ accepted / Σ drafted (pooled over all draft steps);
* ``alpha_tested`` = Σ accepted / (Σ accepted + Σ rejections): the per-position acceptance
  rate over the draft positions actually verified before the first rejection of each step —
  the quantity comparable with a per-position estimate (accepted/drafted is lower, since the
  drafts after a rejection count as drafted but are never tested);
* ``tau``          = Σ accepted_lengths / #steps (tokens per target verify step, bonus incl.).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from specfair.measure import metrics
from specfair.measure.io import read_records
from specfair.measure.stats import (
    LEVEL,
    N_RESAMPLES,
    bootstrap_ratio_of_means,
    bootstrap_ratio_of_ratios,
)


def _bench_block(pairs: Sequence[tuple[dict, dict]], boot: dict) -> dict:
    ar_tps = np.array([a["new_tokens"] / a["wall_s"] if a["wall_s"] else np.nan for a, _ in pairs])
    sd_tps = np.array([s["new_tokens"] / s["wall_s"] if s["wall_s"] else np.nan for _, s in pairs])
    ar_tok = np.array([a["new_tokens"] for a, _ in pairs], dtype=float)
    ar_s = np.array([a["wall_s"] for a, _ in pairs], dtype=float)
    sd_tok = np.array([s["new_tokens"] for _, s in pairs], dtype=float)
    sd_s = np.array([s["wall_s"] for _, s in pairs], dtype=float)
    acc = np.array([s["accepted"] for _, s in pairs], dtype=float)
    dra = np.array([s["drafted"] for _, s in pairs], dtype=float)
    rej = np.array([s.get("rejections", np.nan) for _, s in pairs], dtype=float)
    len_sum = np.array([sum(s["accepted_lengths"]) for _, s in pairs], dtype=float)
    steps = np.array([len(s["accepted_lengths"]) for _, s in pairs], dtype=float)
    matches = [s.get("matches_ar") for _, s in pairs if s.get("matches_ar") is not None]
    return {
        "n": len(pairs),
        "ar_tps": float(np.mean(ar_tps)) if len(pairs) else float("nan"),
        "sd_tps": float(np.mean(sd_tps)) if len(pairs) else float("nan"),
        "speedup": bootstrap_ratio_of_means(sd_tps, ar_tps, **boot),
        "speedup_tokw": bootstrap_ratio_of_ratios(sd_tok, sd_s, ar_tok, ar_s, **boot),
        "alpha": bootstrap_ratio_of_means(acc, dra, **boot),
        "alpha_tested": bootstrap_ratio_of_means(acc, acc + rej, **boot),
        "tau": bootstrap_ratio_of_means(len_sum, steps, **boot),
        "ar_tokens": int(ar_tok.sum()),
        "sd_tokens": int(sd_tok.sum()),
        "sd_matches_ar": (sum(bool(m) for m in matches) / len(matches)) if matches else None,
        "by_proposer": _by_proposer([s for _, s in pairs]),
    }


def _by_proposer(sd_recs: Sequence[dict]) -> dict:
    """Per proposer ("model", "ngram"): its steps, drafts, acceptances summed over the SD
    records, and its share of the drafting steps."""
    out: dict[str, dict] = {}
    for r in sd_recs:
        for name, counts in r.get("by_proposer", {}).items():
            d = out.setdefault(name, {"steps": 0, "drafted": 0, "accepted": 0})
            for k in d:
                d[k] += counts.get(k, 0)
    total = sum(d["steps"] for d in out.values())
    for d in out.values():
        d["share"] = d["steps"] / total if total else None
    return out


def summarize_bench(
    src: str | Path | Iterable[dict],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
) -> dict:
    """``bench_summary.json`` (see docs/CONTRACTS.md) from a ``bench.jsonl`` path or records.

    Only prompts with both an AR and an SD record count (``meta.n_incomplete`` counts others).
    """
    records, source = read_records(src)
    by_key: dict[tuple[str, str], dict] = {}
    for r in records:
        by_key.setdefault((r["id"], r["mode"]), r)
    ids = list(dict.fromkeys(r["id"] for r in records))
    pairs = {
        i: (by_key[(i, "ar")], by_key[(i, "sd")])
        for i in ids
        if (i, "ar") in by_key and (i, "sd") in by_key
    }
    boot = {"n_resamples": n_resamples, "seed": seed, "level": level}
    tasks = {}
    for task in dict.fromkeys(r["task"] for r in records):
        tp = [p for i, p in pairs.items() if p[0]["task"] == task]
        if tp:
            tasks[task] = _bench_block(tp, boot)
    sd_recs = [s for _, s in pairs.values()]

    def distinct(key):
        vals = list(dict.fromkeys(r.get(key) for r in sd_recs))
        return vals[0] if len(vals) == 1 else vals

    disp = metrics.disparity({t: b["speedup"]["mean"] for t, b in tasks.items()})
    disp["tokw"] = metrics.disparity({t: b["speedup_tokw"]["mean"] for t, b in tasks.items()})
    return {
        "meta": {
            "source": source,
            "n_records": len(records),
            "n_prompts": len(pairs),
            "n_incomplete": len(ids) - len(pairs),
            "drafter": distinct("drafter"),
            "target": distinct("target"),
            "gamma": distinct("gamma"),
            "policy": distinct("policy"),
            "proposer": distinct("proposer"),
            "temperature": distinct("temperature"),
            "max_new_tokens": distinct("max_new_tokens"),
            "bootstrap": {"method": "percentile, prompts resampled", **boot},
        },
        "tasks": tasks,
        "overall": _bench_block(list(pairs.values()), boot) if pairs else None,
        "disparity": disp,
    }


def _tps(r: dict) -> float:
    return r["new_tokens"] / r["wall_s"] if r["wall_s"] else float("nan")


def compare_bench(
    base: str | Path | Iterable[dict],
    other: str | Path | Iterable[dict],
    *,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    pooled: bool = False,
) -> dict[str, dict]:
    """Two drafters benchmarked on the same prompts against the same AR runs, paired per task:
    ``{task: {"n", "ratio"}}`` where ``ratio`` = mean SD tokens/s of ``other`` ÷ that of
    ``base`` (= its speed-up ÷ the base's, the AR runs being the same) with a bootstrap CI,
    prompts resampled jointly. Only prompts with an SD record in both count. ``pooled``: every
    task's prompts in one group, ``{"all": ...}`` (as a summary's ``overall``)."""
    sd = [{r["id"]: r for r in read_records(src)[0] if r["mode"] == "sd"}
          for src in (base, other)]
    out: dict[str, dict] = {}
    boot = {"n_resamples": n_resamples, "seed": seed, "level": level}
    groups = ["all"] if pooled else dict.fromkeys(r["task"] for r in sd[0].values())
    for task in groups:
        ids = [i for i, r in sd[0].items() if (pooled or r["task"] == task) and i in sd[1]]
        if ids:
            out[task] = {"n": len(ids), "ratio": bootstrap_ratio_of_means(
                [_tps(sd[1][i]) for i in ids], [_tps(sd[0][i]) for i in ids], **boot)}
    return out
