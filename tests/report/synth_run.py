"""A synthetic run directory with hand-made summaries (no models, no measurement code)."""

import json
from pathlib import Path

C = 0.12
GAMMA = 4
TASKS = ("code", "math", "chat")

# speed-up, alpha (accepted/drafted), tau per task
BASE_BENCH = {"code": (2.10, 0.70, 3.4), "math": (1.60, 0.55, 2.6), "chat": (0.90, 0.30, 1.5)}
UNIFORM_BENCH = {"code": (2.00, 0.68, 3.3), "math": (1.70, 0.58, 2.7), "chat": (1.30, 0.45, 2.0)}
HURT_BENCH = {"code": (1.90, 0.66, 3.2), "math": (1.40, 0.50, 2.4), "chat": (0.70, 0.25, 1.3)}
# estimated greedy alpha, CE per task
BASE_EST = {"code": (0.78, 0.60), "math": (0.66, 1.00), "chat": (0.42, 1.90)}
UNIFORM_EST = {"code": (0.77, 0.62), "math": (0.69, 0.95), "chat": (0.55, 1.40)}
BALANCED_EST = {"code": (0.75, 0.70), "math": (0.70, 0.90), "chat": (0.60, 1.20)}


def ci(m, w=0.08):
    return {"mean": m, "lo": m - w, "hi": m + w}


def bench_summary(vals, drafter="drafter", gamma=GAMMA):
    tasks = {t: {"n": 6, "ar_tps": 10.0, "sd_tps": 10.0 * s, "speedup": ci(s, 0.1),
                 "speedup_tokw": ci(s, 0.1), "alpha": ci(a, 0.05),
                 "alpha_tested": ci(min(a + 0.05, 1.0), 0.05), "tau": ci(tau, 0.2)}
             for t, (s, a, tau) in vals.items()}
    worst = min(vals, key=lambda t: vals[t][0])
    return {"meta": {"gamma": gamma, "drafter": drafter, "temperature": 0.0, "n_prompts": 18},
            "tasks": tasks, "overall": tasks[worst],
            "disparity": {"worst_task": worst, "worst_speedup": vals[worst][0],
                          "max_min_ratio": 0.0, "cv": 0.0, "gini": 0.0}}


def estimate_summary(vals, c=C):
    def pred(a):
        out = {}
        for g in range(1, 9):
            tau = (1 - a ** (g + 1)) / (1 - a)
            out[str(g)] = {"tau": tau, "speedup": tau / (g * c + 1)}
        return out

    tasks = {t: {"n": 6, "n_positions": 600, "alpha": ci(a - 0.05, 0.04),
                 "greedy_alpha": ci(a, 0.04), "ce": ci(ce, 0.1), "kl": ci(ce / 2, 0.05),
                 "predicted": pred(a), "predicted_sampling": pred(a - 0.05)}
             for t, (a, ce) in vals.items()}
    return {"meta": {"c": c, "gamma": GAMMA, "temperature": 0.0, "n_prompts": 18},
            "tasks": tasks, "disparity": {"ce_spread": 0.0}}


def train_log(n_steps=40, start_alpha=None, loss_scale=1.0):
    start_alpha = start_alpha or {t: a for t, (a, _) in BASE_EST.items()}
    recs = [{"step": 0, "event": "estimate", "alpha": start_alpha, "weights": {}}]
    for s in range(1, n_steps + 1):
        recs.append({"step": s, "loss": loss_scale * 3.0 / (1 + 0.1 * s), "lr": 1e-4, "tokens": 512,
                     "tokens_per_s": 300.0, "weights": {t: 1 / 3 for t in TASKS}})
        if s % 10 == 0:
            recs.append({"step": s, "event": "estimate",
                         "alpha": {t: a + 0.002 * s for t, a in start_alpha.items()}})
    return recs


def write(path: Path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(obj, list):
        path.write_text("".join(json.dumps(r) + "\n" for r in obj))
    else:
        path.write_text(json.dumps(obj))


def make_run(root: Path, uniform_bench=UNIFORM_BENCH) -> Path:
    """baseline (bench + estimate); uniform (bench + estimate + train log);
    balanced (estimate + train log, **no bench**)."""
    write(root / "config.json", {"target": "qwen2.5-coder-1.5b-instruct",
                                 "drafter": "qwen2.5-coder-0.5b-instruct", "gamma": GAMMA,
                                 "variants": ["uniform", "balanced"]})
    write(root / "environment.json", {"python": "3.11", "torch": "2.x", "cpu": "synthetic"})
    write(root / "baseline/bench_summary.json", bench_summary(BASE_BENCH, "base"))
    write(root / "baseline/estimate_summary.json", estimate_summary(BASE_EST))
    write(root / "variants/uniform/bench_summary.json", bench_summary(uniform_bench, "uniform"))
    write(root / "variants/uniform/estimate_summary.json", estimate_summary(UNIFORM_EST))
    write(root / "variants/uniform/train_log.jsonl", train_log())
    write(root / "variants/balanced/estimate_summary.json", estimate_summary(BALANCED_EST))
    write(root / "variants/balanced/train_log.jsonl", train_log(30, loss_scale=1.2))
    return root

