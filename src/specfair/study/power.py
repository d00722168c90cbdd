"""The study's power: per task, the smallest paired effect its test set can detect
(:mod:`specfair.measure.power`: two-sided 95 %, 80 % power, ``MDE = 2.80 sd(d) / sqrt(n)``).

* Δ greedy alpha (teacher-forced): ``d`` = a drafter's greedy alpha on a test prompt minus
  the base drafter's on the same prompt, for each arm at its largest budget and each data-dose
  point (first seed); before any arm exists the planning estimate uses the base drafter's own
  per-prompt greedy alpha (``sd`` across its test prompts: an upper bound on the paired
  difference's where the two drafters' alphas correlate across prompts, as they do).
* Δ speed-up (timed): ``d`` = a timed prompt's SD tokens/s with the arm's drafter over that
  with the base drafter, minus 1 (the AR runs are the same: the ratio of the two speed-ups), a
  relative change; the planning estimate, before an arm is timed, is the spread of the base
  drafter's per-prompt speed-up (SD ÷ AR tokens/s) relative to its mean (an upper bound too:
  the prompts' own spread, which pairing removes, is in it).
"""

from __future__ import annotations

from pathlib import Path

from specfair.measure.bench import BENCH_FILE, load_bench_records
from specfair.measure.power import LEVEL, POWER, mde, n_needed, z_sum
from specfair.study.config import StudyConfig
from specfair.study.dose import point_name

# the timed stage's directories (specfair.study.timed.TIMED, BASE; not imported: the timed
# stage's module loads models and imports the summary)
TIMED, BASE = "timed", "base"
# the targets (issue 29): Δ greedy alpha <= 0.02 (teacher-forced, >= 100 test prompts),
# Δ speed-up <= 8 % on the two worst tasks (timed: >= 30 prompts, >= 128 new tokens)
TARGET_ALPHA, TARGET_SPEEDUP = 0.02, 0.08
MIN_TEST, MIN_TIMED, MIN_NEW_TOKENS = 100, 30, 128


def _greedy(records: list[dict], arm: str, budget: float, seed: int) -> dict:
    return {(r["task"], r["id"]): r["greedy"] for r in records
            if r["arm"] == arm and r["budget"] == budget and r.get("seed", seed) == seed}


def alpha_power(records: list[dict], cfg: StudyConfig) -> dict:
    """``{"planning": {task: {n, sd, mde, n_for_target}}, "arms": {name: {task: {n, sd,
    mde}}}}`` for Δ greedy alpha (see the module)."""
    base = _greedy(records, BASE, 0.0, 0)
    plan = {}
    for t in cfg.tasks:
        m = mde([v for (task, _), v in base.items() if task == t])
        plan[t] = m | {"n_for_target": n_needed(m["sd"], TARGET_ALPHA)}
    names = [(a, max(cfg.budgets)) for a in cfg.arms]
    names += [(point_name(cfg, p), 1.0) for p in cfg.dose_points]
    arms = {}
    for name, b in names:
        arm = _greedy(records, name, b, cfg.seeds[0])
        if not arm:
            continue
        arms[name] = {t: mde([arm[k] - base[k] for k in arm if k[0] == t and k in base])
                      for t in cfg.tasks}
    return {"planning": plan, "arms": arms}


def _sd_tps(path: Path) -> dict[str, dict]:
    """``{id: record}`` of a bench file's SD runs (and ``"ar"``: the AR runs)."""
    out: dict[str, dict] = {"sd": {}, "ar": {}}
    for r in load_bench_records(path):
        if r["mode"] in out and r["wall_s"]:
            out[r["mode"]][r["id"]] = r
    return out


def _tps(r: dict) -> float:
    return r["new_tokens"] / r["wall_s"]


def speedup_power(run_dir: Path) -> dict | None:
    """``{"planning": {task: {n, sd, mde, n_for_target}}, "arms": {arm: {task: {n, sd,
    mde}}}}`` for Δ speed-up (relative; see the module) from the timed stage's bench records,
    None before anything was timed."""
    root = run_dir / TIMED
    base_path = root / BASE / BENCH_FILE
    if not base_path.is_file():
        return None
    base = _sd_tps(base_path)
    tasks = list(dict.fromkeys(r["task"] for r in base["sd"].values()))
    plan = {}
    for t in tasks:
        s = [_tps(r) / _tps(base["ar"][i]) for i, r in base["sd"].items()
             if r["task"] == t and i in base["ar"]]
        mean = sum(s) / len(s) if s else 0.0
        m = mde([x / mean - 1 for x in s] if mean > 0 else [])
        plan[t] = m | {"n_for_target": n_needed(m["sd"], TARGET_SPEEDUP)}
    arms = {}
    for d in sorted(p for p in root.iterdir() if p.is_dir() and p.name != BASE):
        if not (d / BENCH_FILE).is_file():
            continue
        other = _sd_tps(d / BENCH_FILE)["sd"]
        arms[d.name] = {t: mde([_tps(other[i]) / _tps(r) - 1 for i, r in base["sd"].items()
                                if r["task"] == t and i in other]) for t in tasks}
    return {"planning": plan, "arms": arms}


def timed_dtype(run_dir: Path) -> str | None:
    """The dtype the timed stage's target computed in (its bench records' settings), None
    before anything was timed: what 'lossless' (SD's answer equal to plain decoding's) is
    measured in."""
    path = run_dir / TIMED / BASE / BENCH_FILE
    recs = load_bench_records(path) if path.is_file() else []
    return next((r["settings"].get("dtype") for r in recs if r.get("settings")), None)


def lagging_tasks(cfg: StudyConfig) -> list[str]:
    """The tasks the targets are checked on: the data dose's tasks where the run has a dose,
    else every task."""
    return [t for t in cfg.tasks if cfg.doses_task(t)] if cfg.dose_points else list(cfg.tasks)


def _check(m: dict | None, source: str | None, target: float, min_n: int) -> dict:
    """One target against one MDE: met where the set has ``min_n`` prompts and its MDE is at
    most ``target``."""
    n, v = (m or {}).get("n", 0), (m or {}).get("mde")
    return {"n": n, "mde": v, "source": source, "paired": source != "planning",
            "min_n": min_n, "target": target,
            "met": bool(v is not None and n >= min_n and v <= target)}


def target_checks(p: dict, cfg: StudyConfig, base_speedup: dict[str, float]) -> dict:
    """Issue 29's power targets per lagging task (:func:`lagging_tasks`), each MDE against its
    target, with its n: Δ greedy alpha <= :data:`TARGET_ALPHA` on >= :data:`MIN_TEST` test
    prompts (the paired sd at the largest dose where it is evaluated, else the dose arm's or an
    arm's at its largest budget, else the planning sd); Δ speed-up <= :data:`TARGET_SPEEDUP` on
    >= :data:`MIN_TIMED` timed prompts of >= :data:`MIN_NEW_TOKENS` new tokens (the dose arm's
    timed paired ratios, else an arm's, else planning), the target applying to the two worst
    tasks by the base drafter's predicted speed-up (``base_speedup``)."""
    tasks = lagging_tasks(cfg)
    worst = sorted(tasks, key=lambda t: base_speedup[t])[:2]
    largest = point_name(cfg, max(cfg.dose_points)) if cfg.dose_points else None
    a, sp = p["alpha"], p["speedup"]
    a_src = next((n for n in (largest, cfg.dose_arm, *cfg.arms) if n in a["arms"]), None)
    s_src = next((n for n in (cfg.dose_arm, *cfg.arms) if sp and n in sp["arms"]), None)
    per = {}
    for t in tasks:
        am = a["arms"][a_src][t] if a_src else a["planning"][t]
        sm = (sp["arms"][s_src].get(t) if s_src else sp["planning"].get(t)) if sp else None
        timed = _check(sm, s_src or ("planning" if sp else None), TARGET_SPEEDUP, MIN_TIMED)
        timed |= {"new_tokens": cfg.test_response_tokens, "min_new_tokens": MIN_NEW_TOKENS,
                  "applies": t in worst}
        timed["met"] = timed["met"] and cfg.test_response_tokens >= MIN_NEW_TOKENS
        per[t] = {"alpha": _check(am, a_src or "planning", TARGET_ALPHA, MIN_TEST),
                  "speedup": timed}
    return {"tasks": tasks, "two_worst": worst, "alpha_source": a_src or "planning",
            "speedup_source": s_src or ("planning" if sp else None), "per_task": per}


def power_summary(run_dir: Path, records: list[dict], cfg: StudyConfig,
                  base_speedup: dict[str, float] | None = None) -> dict:
    """``summary.json``'s ``power``: the level, power and z sum, the targets, and the smallest
    detectable Δ greedy alpha and Δ speed-up per task (:func:`alpha_power`,
    :func:`speedup_power`); with ``base_speedup`` (the base drafter's predicted speed-up per
    task) also ``checks`` (:func:`target_checks`)."""
    out = {"level": LEVEL, "power": POWER, "z": z_sum(),
           "targets": {"alpha": TARGET_ALPHA, "speedup": TARGET_SPEEDUP, "min_test": MIN_TEST,
                       "min_timed": MIN_TIMED, "min_new_tokens": MIN_NEW_TOKENS},
           "alpha": alpha_power(records, cfg), "speedup": speedup_power(run_dir)}
    if base_speedup is not None:
        out["checks"] = target_checks(out, cfg, base_speedup)
    return out
