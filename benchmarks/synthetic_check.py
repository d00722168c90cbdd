"""Do the target-written prompts stand for the real task? Base acceptance on synthetic vs real.

For each task with synthetic prompts (``specfair data synthesize``): the study suite's synthetic
*test* prompts and the real prompts of the same task in the embedded default suite (all of them,
and its test split alone, whose prompts were never shown to the writer as examples). Per prompt
the target's greedy answer (batched, ``--max-new-tokens``), then the base drafter's
teacher-forced passes along it: greedy α (the fraction of positions where the drafter's argmax
is the target's token: exact) and the sampled α (Σ min(p, q), full vocabulary, temperature 1).
Pooled per set with a 95 % bootstrap CI over prompts, and the difference synthetic − real with
its CI (unpaired: prompts resampled within each set). The issue's bar: |Δ greedy α| ≤ 0.05.

    python benchmarks/synthetic_check.py --out runs/synthetic_check

Answers are cached in ``OUT/responses.jsonl`` (a rerun reuses them).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from specfair.defaults import DEFAULT_DRAFTER, DEFAULT_TARGET
from specfair.measure.estimate import teacher_forced_stats
from specfair.measure.responses import fill_responses_batched, read_responses
from specfair.measure.stats import bootstrap_ratio_of_means
from specfair.models.hardware import cpu_name
from specfair.models.load import load_model, load_tokenizer
from specfair.tasks.study import load_study_suite
from specfair.tasks.suite import sample_per_task
from specfair.tasks.suite_load import load_default_suite


def _pooled(rows: list[tuple[float, float, int]]) -> dict:
    g = [r[0] for r in rows]
    a = [r[1] for r in rows]
    n = [r[2] for r in rows]
    return {"n_prompts": len(rows), "positions": int(sum(n)),
            "greedy_alpha": bootstrap_ratio_of_means(g, n),
            "alpha": bootstrap_ratio_of_means(a, n), "rows": rows}


def _diff_ci(x: list, y: list, key: int, reps: int = 2000, seed: int = 0) -> dict:
    """Unpaired bootstrap CI of pooled(x) − pooled(y) for column ``key`` (greedy 0, alpha 1)."""
    rng = np.random.default_rng(seed)
    xv, xn = np.array([r[key] for r in x]), np.array([r[2] for r in x])
    yv, yn = np.array([r[key] for r in y]), np.array([r[2] for r in y])
    i = rng.integers(0, len(x), (reps, len(x)))
    j = rng.integers(0, len(y), (reps, len(y)))
    d = xv[i].sum(1) / xn[i].sum(1) - yv[j].sum(1) / yn[j].sum(1)
    point = xv.sum() / xn.sum() - yv.sum() / yn.sum()
    lo, hi = np.quantile(d, [0.025, 0.975])
    return {"mean": float(point), "lo": float(lo), "hi": float(hi)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--target", default=DEFAULT_TARGET)
    ap.add_argument("--drafter", default=DEFAULT_DRAFTER)
    ap.add_argument("--tasks", nargs="+", default=["zh", "ja", "qa"])
    ap.add_argument("--n-synthetic", type=int, default=40)
    ap.add_argument("--max-new-tokens", type=int, default=64)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()

    study = load_study_suite(tasks=args.tasks)
    default = load_default_suite()
    sets = {}
    for t in args.tasks:
        sets[(t, "synthetic")] = sample_per_task(study.prompts("test", [t]), args.n_synthetic)
        sets[(t, "real")] = default.prompts("all", [t])
    real_test = {p.id for t in args.tasks for p in default.prompts("test", [t])}
    tok = load_tokenizer(args.target)
    target = load_model(args.target, "auto", "auto")
    drafter = load_model(args.drafter, "auto", "auto")
    args.out.mkdir(parents=True, exist_ok=True)
    cache = args.out / "responses.jsonl"
    t0 = time.perf_counter()
    every = [p for ps in sets.values() for p in ps]
    fill_responses_batched(target, tok, every, cache, max_new_tokens=args.max_new_tokens)
    answers = read_responses(cache)
    t_resp = time.perf_counter() - t0
    rows: dict[str, tuple] = {}
    for p in every:
        r = answers[(p.id, 0)]
        s = teacher_forced_stats(target, drafter, r["prompt_ids"], r["response_ids"])
        rows[p.id] = (s["greedy_match_sum"], s["alpha_sum"], s["n_positions"])
    out = {"meta": {"target": args.target, "drafter": args.drafter,
                    "max_new_tokens": args.max_new_tokens, "cpu": cpu_name(),
                    "seconds_responses": round(t_resp, 1),
                    "seconds_total": round(time.perf_counter() - t0, 1)},
           "tasks": {}}
    print(f"{'task':6s} {'set':14s} {'n':>3s} {'greedy α':>22s} {'α (T=1)':>22s}")
    for t in args.tasks:
        syn = [rows[p.id] for p in sets[(t, "synthetic")]]
        real = [rows[p.id] for p in sets[(t, "real")]]
        real_t = [rows[p.id] for p in sets[(t, "real")] if p.id in real_test]
        res = {"synthetic": _pooled(syn), "real_all": _pooled(real),
               "real_test": _pooled(real_t),
               "diff_greedy_vs_real_all": _diff_ci(syn, real, 0),
               "diff_greedy_vs_real_test": _diff_ci(syn, real_t, 0),
               "diff_alpha_vs_real_all": _diff_ci(syn, real, 1)}
        out["tasks"][t] = res
        for name in ("synthetic", "real_all", "real_test"):
            r = res[name]
            g, a = r["greedy_alpha"], r["alpha"]
            print(f"{t:6s} {name:14s} {r['n_prompts']:3d} {g['mean']:.3f} [{g['lo']:.3f}, "
                  f"{g['hi']:.3f}]   {a['mean']:.3f} [{a['lo']:.3f}, {a['hi']:.3f}]")
        d = res["diff_greedy_vs_real_all"]
        print(f"{t:6s} Δ greedy α synthetic − real: {d['mean']:+.3f} [{d['lo']:+.3f}, "
              f"{d['hi']:+.3f}]")
    (args.out / "synthetic_check.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {args.out / 'synthetic_check.json'}")


if __name__ == "__main__":
    main()
