"""The tables of a benchmarks/engine.py record file, also of a run still going or stopped
(``--out``'s ``.partial.jsonl``, resumed over sessions): per task and variant the geometric-mean
speed-up over specfair AR (n prompts), each variant over AR and over HF assisted generation's
defaults with a bootstrap CI over prompts, worst and best task, two paired variant ratios, and
the share of answers equal to AR (bf16: a batched verification rounds differently).

    python benchmarks/engine_partial.py docs/results/issue30/engine-study-128.partial.jsonl
"""

from __future__ import annotations

import json
import sys

import numpy as np
from engine_report import geo_ci

FIXED = ("ar", "sd", "hf_sd")


def tps(rec: dict, label: str) -> float:
    return rec[label]["tps"] if label in FIXED else rec["variants"][label]["tps"]


def gmean(xs) -> float:
    return float(np.exp(np.mean(np.log(xs))))


def boot(ratios) -> tuple[float, float, float]:
    """Geometric mean of ``ratios`` with a bootstrap 95 % CI over them (4000 resamples)."""
    g = geo_ci(np.log(np.array(ratios)), np.random.default_rng(0), 4000)
    return g["ratio"], *g["ci"]


def main(path: str) -> None:
    recs = [r for r in map(json.loads, filter(str.strip, open(path))) if "id" in r]
    tasks = list(dict.fromkeys(r["task"] for r in recs))
    variants = list(dict.fromkeys(k for r in recs for k in r.get("variants", {})))
    labels = ["sd", "hf_sd", *variants]
    print(f"{len(recs)} prompts, {len(tasks)} tasks; speed-up over specfair AR "
          "(geometric mean over the task's prompts)")
    print("| task | n | " + " | ".join(labels) + " |")
    print("|---|---|" + "---|" * len(labels))
    for t in tasks:
        rs = [r for r in recs if r["task"] == t]
        cells = [f"{gmean([tps(r, lab) / tps(r, 'ar') for r in rs]):.2f}" for lab in labels]
        print(f"| {t} | {len(rs)} | " + " | ".join(cells) + " |")
    for lab in labels:
        per = {t: gmean([tps(r, lab) / tps(r, "ar") for r in recs if r["task"] == t])
               for t in tasks}
        lo_t, hi_t = min(per, key=per.get), max(per, key=per.get)
        ar = boot([tps(r, lab) / tps(r, "ar") for r in recs])
        hf = boot([tps(r, lab) / tps(r, "hf_sd") for r in recs])
        print(f"{lab}: vs AR {ar[0]:.3f} [{ar[1]:.3f}, {ar[2]:.3f}]; vs HF assisted "
              f"{hf[0]:.3f} [{hf[1]:.3f}, {hf[2]:.3f}]; worst {lo_t} {per[lo_t]:.2f}, best "
              f"{hi_t} {per[hi_t]:.2f}, max/min {per[hi_t] / per[lo_t]:.2f}")
    base = "adaptive+hybrid"
    for lab in variants:
        if lab != base and base in variants:
            m, lo, hi = boot([tps(r, lab) / tps(r, base) for r in recs])
            print(f"{lab} / {base}, paired: {m:.3f} [{lo:.3f}, {hi:.3f}]")
    same = {"sd": sum(r["match_sd_ar"] == 1.0 for r in recs)}
    same |= {lab: sum(r["variants"][lab]["match_ar"] == 1.0 for r in recs) for lab in variants}
    print("answers equal to AR: " + ", ".join(f"{k} {v}/{len(recs)}" for k, v in same.items()))


if __name__ == "__main__":
    main(sys.argv[1])
