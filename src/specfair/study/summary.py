"""The study's numbers: per arm and budget, each task's alpha and its paired change against the
base drafter, the disparity metrics with paired bootstrap CIs, slopes per 10k training tokens,
and the projected budget for the worst task to reach the mean (an extrapolation).

Pairing: every arm is evaluated on the same test sequences as the base drafter; a bootstrap
resample draws prompts once and applies the draw to both, so the CI of a change is the CI of a
paired difference. Shared sources are resampled jointly: the unit of a draw is a prompt's split
group (``group`` in ``eval.jsonl``: one MGSM problem in mgsm_zh, mgsm_ja and translation_en_fr;
one ShareGPT conversation in chat/code and summarization), drawn within the stratum of groups
that span the same tasks, so every task keeps its number of groups and correlated tests are not
counted as independent. Without shared groups this is the per-task prompt bootstrap.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from specfair.measure.io import read_json, read_jsonl
from specfair.measure.replay import POLICIES, pass_of
from specfair.study.config import StudyConfig
from specfair.study.policies import study_policies


def _by_prompt(records: list[dict], arm: str, budget: float) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in records:
        if r["arm"] == arm and r["budget"] == budget:
            out.setdefault(r["task"], {})[r["id"]] = r
    return out


def group_draws(base, arm, tasks, n_boot, seed) -> tuple[dict, dict, np.ndarray]:
    """The paired prompt ids per task, each one's group column, and ``[B, G]`` multiplicities
    of the groups in each replicate (stratified by the set of tasks a group spans). A record
    without ``group`` (runs before it was recorded) is its own group."""
    ids = {t: sorted(set(base[t]) & set(arm[t])) for t in tasks}
    group = {(t, i): base[t][i].get("group") or f"{t}/{i}" for t in tasks for i in ids[t]}
    col = {g: k for k, g in enumerate(sorted(set(group.values())))}
    spans: dict[str, set] = {}
    for (t, _), g in group.items():
        spans.setdefault(g, set()).add(t)
    strata: dict[tuple, list[int]] = {}
    for g, k in col.items():
        strata.setdefault(tuple(sorted(spans[g])), []).append(k)
    rng = np.random.default_rng(seed)
    w = np.zeros((n_boot, len(col)))
    rows = np.arange(n_boot)[:, None]
    for key in sorted(strata):
        cols = np.array(strata[key])
        np.add.at(w, (rows, cols[rng.integers(0, len(cols), (n_boot, len(cols)))]), 1)
    return ids, {t: np.array([col[group[(t, i)]] for i in ids[t]], int) for t in tasks}, w


def _resampled_means(base, arm, tasks, metric, draws):
    """``(point_base [K], point_arm [K], boot_base [B, K], boot_arm [B, K])`` task means."""
    ids, cols, w = draws
    pb, pa, bb, ba = [], [], [], []
    for t in tasks:
        xb = np.array([base[t][i][metric] for i in ids[t]])
        xa = np.array([arm[t][i][metric] for i in ids[t]])
        wt = w[:, cols[t]]
        pb.append(xb.mean())
        pa.append(xa.mean())
        bb.append(wt @ xb / wt.sum(1))
        ba.append(wt @ xa / wt.sum(1))
    return np.array(pb), np.array(pa), np.stack(bb, 1), np.stack(ba, 1)


def _ci(point: float, boot: np.ndarray) -> dict:
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"value": float(point), "lo": float(lo), "hi": float(hi)}


def _u(ce: np.ndarray) -> np.ndarray:
    """Sandler et al.'s CE spread: population variance across tasks (last axis)."""
    return ce.var(-1)


def compare(records, arm, budget, tasks, cfg: StudyConfig, costs: dict,
            held_records: list[dict] = ()) -> dict:
    """One arm at one budget against the base drafter, on the same test prompts. Predicted
    speed-ups replay each drafting policy on the teacher-forced passes with the measured c
    and v(k) (:mod:`specfair.measure.replay`); the first policy is the headline one; gamma is
    chosen in sample and on ``held_records`` (:mod:`specfair.study.policies`)."""
    base, mine = _by_prompt(records, "base", 0.0), _by_prompt(records, arm, budget)
    draws = group_draws(base, mine, tasks, cfg.bootstrap, cfg.seed)
    a_pb, a_pa, a_bb, a_ba = _resampled_means(base, mine, tasks, "alpha", draws)
    c_pb, c_pa, c_bb, c_ba = _resampled_means(base, mine, tasks, "ce", draws)
    g_pb, g_pa, _, _ = _resampled_means(base, mine, tasks, "greedy", draws)
    worst = int(np.argmin(a_pb))
    held = _by_prompt(held_records, arm, budget)
    policies, held_scores = study_policies(
        {t: [pass_of(r) for r in mine[t].values()] for t in tasks},
        {t: [pass_of(r) for r in held.get(t, {}).values()] for t in tasks},
        costs["c"], costs["verify_slope"])
    sp = [policies[POLICIES[0].label][t]["speedup"] for t in tasks]
    return {
        "arm": arm, "budget": budget,
        "tokens": next(r["tokens"] for r in records if r["arm"] == arm and r["budget"] == budget),
        "tasks": {t: {"alpha": float(a_pa[k]), "greedy": float(g_pa[k]), "ce": float(c_pa[k]),
                      "d_alpha": _ci(a_pa[k] - a_pb[k], a_ba[:, k] - a_bb[:, k]),
                      "predicted_speedup": sp[k]}
                  for k, t in enumerate(tasks)},
        "mean_alpha": _ci(a_pa.mean(), a_ba.mean(1)),
        "d_mean_alpha": _ci(a_pa.mean() - a_pb.mean(), a_ba.mean(1) - a_bb.mean(1)),
        "base_worst_task": tasks[worst],
        "d_base_worst_alpha": _ci(a_pa[worst] - a_pb[worst], a_ba[:, worst] - a_bb[:, worst]),
        "worst_alpha": _ci(a_pa.min(), a_ba.min(1)),
        "d_worst_alpha": _ci(a_pa.min() - a_pb.min(), a_ba.min(1) - a_bb.min(1)),
        "U": _ci(float(_u(c_pa)), _u(c_ba)),
        "U_change": _ci(float(_u(c_pa) / _u(c_pb) - 1), _u(c_ba) / _u(c_bb) - 1),
        "max_min_speedup": float(max(sp) / min(sp)),
        "policies": policies,
        "policies_heldout": held_scores,
        "n_heldout_passes": {t: len(held.get(t, {})) for t in tasks},
    }


def _slope(xs: list[float], ys: list[float]) -> float:
    """Least-squares slope (per token) through the points."""
    if len(xs) < 2:
        return float("nan")
    return float(np.polyfit(np.array(xs, float), np.array(ys, float), 1)[0])


def dose_response(rows: list[dict], base: dict, tasks: list[str]) -> dict:
    """Slopes per 10k training tokens (base at 0 tokens included) and the projection."""
    xs = [0.0] + [r["tokens"] for r in rows]
    per_task = {t: 1e4 * _slope(xs, [base["tasks"][t]["alpha"]] +
                                [r["tasks"][t]["alpha"] for r in rows]) for t in tasks}
    mean_s = 1e4 * _slope(xs, [base["mean_alpha"]["value"]] +
                          [r["mean_alpha"]["value"] for r in rows])
    u_s = 1e4 * _slope(xs, [base["U"]["value"]] + [r["U"]["value"] for r in rows])
    w = base["base_worst_task"]
    gap = base["mean_alpha"]["value"] - base["tasks"][w]["alpha"]
    closing = per_task[w] - mean_s
    # only a rising worst task that gains on the mean is projected (a falling one "closes" the
    # gap only when the mean falls faster: no budget makes it reach the base mean)
    proj = gap / closing * 1e4 if closing > 0 and per_task[w] > 0 else None
    return {"alpha_per_10k": per_task, "mean_alpha_per_10k": mean_s, "U_per_10k": u_s,
            "worst_task": w, "gap": gap,
            "projected_tokens_worst_reaches_mean": proj}


def _bootstrap_info(records: list[dict], cfg: StudyConfig) -> dict:
    base = [r for r in records if r["arm"] == "base"]
    tasks_of: dict[str, set] = {}
    for r in base:
        tasks_of.setdefault(r.get("group") or r["id"], set()).add(r["task"])
    return {"replicates": cfg.bootstrap, "grouped": all(r.get("group") for r in base),
            "shared_groups": sum(len(t) > 1 for t in tasks_of.values())}


def _json_or_none(path: Path):
    return read_json(path) if path.is_file() else None


def write_summary(run_dir: Path, cfg: StudyConfig) -> Path:
    records = read_jsonl(run_dir / "eval.jsonl")
    held = read_jsonl(run_dir / "policy_eval.jsonl")
    costs = read_json(run_dir / "costs.json")
    tasks = list(cfg.tasks)
    base = compare(records, "base", 0.0, tasks, cfg, costs, held)
    arms = {}
    for arm in cfg.arms:
        rows = [compare(records, arm, b, tasks, cfg, costs, held) for b in cfg.budgets
                if any(r["arm"] == arm and r["budget"] == b for r in records)]
        if rows:
            arms[arm] = {"budgets": rows, "dose_response": dose_response(rows, base, tasks)}
    summary = {"config": cfg.to_dict(), "costs": costs, "base": base, "arms": arms,
               "overfit": _json_or_none(run_dir / "overfit.json"),
               "leakage": _json_or_none(run_dir / "leakage.json"),
               "bootstrap": _bootstrap_info(records, cfg)}
    path = run_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, allow_nan=False,
                               default=lambda x: None))
    return path
