"""Validate the drafting-policy replay (:mod:`specfair.measure.replay`) against the engine.

On the study's test prompts (a finished ``specfair experiment study`` run directory), per task
``--n-per-task`` prompts: plain greedy decoding and speculative decoding under each drafting
policy (fixed gamma=5, HF's +2/-1 heuristic, confidence < 0.4 up to 20 drafts) with the real pair,
timed in one run; the replay of the same policy on a teacher-forced pass of the drafter along
the target's greedy answer predicts steps, acceptances and the speed-up from the run's measured
costs (``costs.json``: c and v(k)). Two passes are replayed: along the engine's own answer (the
replay's exactness: steps and acceptances must be equal for fixed and heuristic) and the study's
stored pass (``eval.jsonl``, the base drafter's records: what the study's report uses).

Run: ``python benchmarks/replay_vs_bench.py --run-dir runs/study --out
docs/results/replay_vs_bench.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

from specfair.decoding import autoregressive_generate, speculative_generate
from specfair.decoding.gamma import FixedGamma, HeuristicGamma
from specfair.measure.io import read_jsonl
from specfair.measure.replay import POLICIES, Policy, pass_of, replay
from specfair.models.hardware import cpu_supports_bf16
from specfair.models.load import load_model, load_tokenizer
from specfair.study.config import StudyConfig
from specfair.study.data import study_prompts, test_sequences
from specfair.tasks.study import load_study_suite


def engine_kwargs(p: Policy) -> dict:
    if p.kind == "fixed":
        return {"gamma": FixedGamma(p.gamma)}
    if p.kind == "heuristic":
        return {"gamma": HeuristicGamma(p.gamma, p.max_gamma)}
    return {"gamma": FixedGamma(p.max_gamma), "draft_threshold": p.threshold}


@torch.inference_mode()
def own_pass(drafter, prompt: list[int], tokens: list[int]) -> dict:
    """The drafter's teacher-forced match/conf along ``tokens`` (as ``evaluate`` records)."""
    x = torch.tensor([prompt + tokens])
    probs = torch.softmax(drafter(input_ids=x).logits[0, len(prompt) - 1 : -1].float(), -1)
    top = probs.max(-1)
    return {"match": [int(a) == t for a, t in zip(top.indices.tolist(), tokens, strict=True)],
            "conf": top.values.tolist()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--run-dir", type=Path, required=True)
    ap.add_argument("--n-per-task", type=int, default=3)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    cfg = StudyConfig.from_dict(json.loads((args.run_dir / "study_config.json").read_text()))
    costs = json.loads((args.run_dir / "costs.json").read_text())
    c, slope = costs["c"], costs["verify_slope"]
    stored = {r["id"]: r for r in read_jsonl(args.run_dir / "eval.jsonl") if r["arm"] == "base"}
    tok = load_tokenizer(cfg.target)
    target = load_model(cfg.target, "auto", "auto")
    drafter = load_model(cfg.drafter, "auto", "auto")
    prompts = study_prompts(cfg, load_study_suite(seed=cfg.seed))
    seqs = test_sequences(cfg, target, tok, prompts.test, args.run_dir)  # cached answers
    rows = []
    for task in cfg.tasks:
        for s in [s for s in seqs if s.task == task][: args.n_per_task]:
            prompt, n_new = list(s.ids[: s.n_prompt]), s.n_resp
            kw = dict(max_new_tokens=n_new, eos_token_id=[])
            ar = autoregressive_generate(target, prompt, **kw)
            mine = own_pass(drafter, prompt, ar.tokens)
            row = {"id": s.id, "task": task, "tokens": len(ar.tokens), "ar_s": ar.wall_s,
                   "same_as_stored_answer": ar.tokens == list(s.ids[s.n_prompt:])}
            for p in POLICIES:
                sd = speculative_generate(target, drafter, prompt, **kw, **engine_kwargs(p))
                r_own = replay(*pass_of(mine), p)
                r_st = replay(*pass_of(stored[s.id]), p)
                row[p.kind] = {
                    "lossless": sd.tokens == ar.tokens, "sd_s": sd.wall_s,
                    "measured_speedup": ar.wall_s / sd.wall_s,
                    "steps": len(sd.steps), "accepted": sd.n_accepted, "drafted": sd.n_drafted,
                    "replay_steps": r_own.steps, "replay_accepted": r_own.accepted,
                    "replay_drafted": r_own.drafted, "replay_tokens": r_own.tokens,
                    "replay_cost": r_own.cost(c, slope),
                    "stored_tokens": r_st.tokens, "stored_cost": r_st.cost(c, slope)}
            rows.append(row)
            print(json.dumps({k: row[k] for k in ("id", "task")} | {
                p.kind: round(row[p.kind]["measured_speedup"], 2) for p in POLICIES}), flush=True)
    out = {"cpu": platform.processor() or platform.machine(), "native_bf16": cpu_supports_bf16(),
           "threads": torch.get_num_threads(), "run_dir": str(args.run_dir), "costs": costs,
           "when": time.strftime("%Y-%m-%d %H:%M"), "rows": rows, "tasks": summarize(rows)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    print(json.dumps(out["tasks"], indent=1))


def summarize(rows: list[dict]) -> dict:
    """Per task and policy: measured speed-up (summed plain time / summed SD time over the
    task's prompts) and predicted (summed tokens / summed replay cost), and the replay's
    exactness."""
    out: dict = {}
    for task in dict.fromkeys(r["task"] for r in rows):
        rs = [r for r in rows if r["task"] == task]
        ar = sum(r["ar_s"] for r in rs)
        out[task] = {}
        for p in POLICIES:
            m = [r[p.kind] for r in rs]
            meas = ar / sum(x["sd_s"] for x in m)
            pred = sum(x["replay_tokens"] for x in m) / sum(x["replay_cost"] for x in m)
            pred_st = sum(x["stored_tokens"] for x in m) / sum(x["stored_cost"] for x in m)
            out[task][p.kind] = {
                "measured": round(meas, 3), "predicted": round(pred, 3),
                "error": round(pred / meas - 1, 3),
                "predicted_stored_pass": round(pred_st, 3),
                "steps_equal": sum(x["steps"] == x["replay_steps"] for x in m),
                "accepted_equal": sum(x["accepted"] == x["replay_accepted"] for x in m),
                "lossless": sum(x["lossless"] for x in m), "n": len(m)}
    return out


if __name__ == "__main__":
    main()
