"""The study's numbers: per arm and budget, each task's alpha and its paired change against the
base drafter, the disparity metrics with paired bootstrap CIs, slopes per 10k training tokens,
and the projected budget for the worst task to reach the mean (an extrapolation).

Pairing: every arm is evaluated on the same test sequences as the base drafter; a bootstrap
resample draws prompts within each task once and applies the draw to both, so the CI of a
change is the CI of a paired difference.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from specfair.measure.io import read_json, read_jsonl
from specfair.measure.replay import POLICIES, pass_of, predict_policies
from specfair.study.config import StudyConfig


def _by_prompt(records: list[dict], arm: str, budget: float) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in records:
        if r["arm"] == arm and r["budget"] == budget:
            out.setdefault(r["task"], {})[r["id"]] = r
    return out


def _resampled_means(base, arm, tasks, metric, n_boot, seed):
    """``(point_base [K], point_arm [K], boot_base [B, K], boot_arm [B, K])`` task means."""
    rng = np.random.default_rng(seed)
    pb, pa, bb, ba = [], [], [], []
    for t in tasks:
        ids = sorted(set(base[t]) & set(arm[t]))
        xb = np.array([base[t][i][metric] for i in ids])
        xa = np.array([arm[t][i][metric] for i in ids])
        idx = rng.integers(0, len(ids), size=(n_boot, len(ids)))
        pb.append(xb.mean())
        pa.append(xa.mean())
        bb.append(xb[idx].mean(1))
        ba.append(xa[idx].mean(1))
    return np.array(pb), np.array(pa), np.stack(bb, 1), np.stack(ba, 1)


def _ci(point: float, boot: np.ndarray) -> dict:
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return {"value": float(point), "lo": float(lo), "hi": float(hi)}


def _u(ce: np.ndarray) -> np.ndarray:
    """Sandler et al.'s CE spread: population variance across tasks (last axis)."""
    return ce.var(-1)


def compare(records, arm, budget, tasks, cfg: StudyConfig, costs: dict) -> dict:
    """One arm at one budget against the base drafter, on the same test prompts. Predicted
    speed-ups replay each drafting policy on the teacher-forced passes with the measured c
    and v(k) (:mod:`specfair.measure.replay`); the first policy is the headline one."""
    base, mine = _by_prompt(records, "base", 0.0), _by_prompt(records, arm, budget)
    B, seed = cfg.bootstrap, cfg.seed
    a_pb, a_pa, a_bb, a_ba = _resampled_means(base, mine, tasks, "alpha", B, seed)
    c_pb, c_pa, c_bb, c_ba = _resampled_means(base, mine, tasks, "ce", B, seed)
    g_pb, g_pa, _, _ = _resampled_means(base, mine, tasks, "greedy", 1, seed)
    worst = int(np.argmin(a_pb))
    per_task = {t: predict_policies([pass_of(r) for r in mine[t].values()], costs["c"],
                                    costs["verify_slope"]) for t in tasks}
    policies = {label: {t: per_task[t][label] for t in tasks} for label in per_task[tasks[0]]}
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


def write_summary(run_dir: Path, cfg: StudyConfig) -> Path:
    records = read_jsonl(run_dir / "eval.jsonl")
    costs = read_json(run_dir / "costs.json")
    tasks = list(cfg.tasks)
    base = compare(records, "base", 0.0, tasks, cfg, costs)
    arms = {}
    for arm in cfg.arms:
        rows = [compare(records, arm, b, tasks, cfg, costs) for b in cfg.budgets
                if any(r["arm"] == arm and r["budget"] == b for r in records)]
        if rows:
            arms[arm] = {"budgets": rows, "dose_response": dose_response(rows, base, tasks)}
    overfit = run_dir / "overfit.json"
    summary = {"config": cfg.to_dict(), "costs": costs, "base": base, "arms": arms,
               "overfit": read_json(overfit) if overfit.is_file() else None}
    path = run_dir / "summary.json"
    path.write_text(json.dumps(summary, indent=2, allow_nan=False,
                               default=lambda x: None))
    plot(summary, run_dir / "dose_response.png")
    (run_dir / "report.md").write_text(render(summary))
    return path


def _fmt(ci: dict, nd: int = 3) -> str:
    return f"{ci['value']:+.{nd}f} [{ci['lo']:+.{nd}f}, {ci['hi']:+.{nd}f}]"


def render(s: dict) -> str:
    tasks = list(s["config"]["tasks"])
    base = s["base"]
    lines = ["# specfair study: drafter fine-tuning against the disparity", ""]
    if s["overfit"]:
        o = s["overfit"]
        lines += [f"Overfit check ({o['task']}, {o['n_sequences']} train sequences, "
                  f"{o['epochs']} epochs, {o['tokens']} tokens, {o['tokens_per_s']:.0f} "
                  f"tokens/s): greedy alpha on those sequences {o['greedy_before']:.3f} -> "
                  f"{o['greedy_after']:.3f} ({o['greedy_after'] - o['greedy_before']:+.3f}).", ""]
    head = "| arm | budget | tokens | " + " | ".join(tasks) + " | mean | worst | U |"
    lines += ["## Alpha per task (test split, teacher-forced on the target's greedy answers)",
              "", head, "|" + " --- |" * (len(tasks) + 6)]
    rows = [base] + [r for a in s["arms"].values() for r in a["budgets"]]
    for r in rows:
        cells = [f"{r['tasks'][t]['alpha']:.3f}" for t in tasks]
        lines.append(f"| {r['arm']} | {r['budget']:.2f} | {r['tokens']} | " + " | ".join(cells)
                     + f" | {r['mean_alpha']['value']:.3f} | {r['worst_alpha']['value']:.3f} | "
                     f"{r['U']['value']:.4f} |")
    lines += ["", "## Paired changes against the base drafter (95% bootstrap CI)", "",
              "| arm | budget | base-worst task d-alpha | mean d-alpha | worst-alpha change | "
              "U change |", "| --- | --- | --- | --- | --- | --- |"]
    for a in s["arms"].values():
        for r in a["budgets"]:
            lines.append(f"| {r['arm']} | {r['budget']:.2f} | {_fmt(r['d_base_worst_alpha'])} | "
                         f"{_fmt(r['d_mean_alpha'])} | {_fmt(r['d_worst_alpha'])} | "
                         f"{_fmt(r['U_change'], 2)} |")
    lines += ["", "## Dose-response (least-squares slope per 10k training tokens)", ""]
    for name, a in s["arms"].items():
        d = a["dose_response"]
        proj = d["projected_tokens_worst_reaches_mean"]
        proj_s = (f"~{proj:,.0f} training tokens (extrapolation)" if proj is not None
                  else "never at the measured slopes (the worst task does not rise, or does "
                       "not gain on the mean)")
        w = d["worst_task"]
        lines.append(f"- **{name}**: worst task {w} {d['alpha_per_10k'][w]:+.4f} alpha/10k"
                     f", mean {d['mean_alpha_per_10k']:+.4f}/10k, U "
                     f"{d['U_per_10k']:+.5f}/10k; worst reaches the mean: {proj_s}.")
    lines += policy_table(s, tasks)
    lines += ["", "![dose-response](dose_response.png)", "", answer(s), ""]
    return "\n".join(lines)


def policy_table(s: dict, tasks: list[str]) -> list[str]:
    """Predicted speed-ups per drafting policy: the base drafter and each arm's largest
    budget (replayed on the teacher-forced passes with the measured c and v)."""
    c = s["costs"]
    lines = ["", "## Drafting policy against fine-tuning: predicted speed-ups",
             "", f"Measured c = {c['c']:.3f}, v(k) = 1 + {c['verify_slope']:.3f} (k - 1).", "",
             "| drafter | policy | " + " | ".join(tasks) + " | max/min |",
             "|" + " --- |" * (len(tasks) + 3)]
    rows = [s["base"]] + [a["budgets"][-1] for a in s["arms"].values()]
    for r in rows:
        for label, per in r["policies"].items():
            sp = [per[t]["speedup"] for t in tasks]
            lines.append(f"| {r['arm']} {r['budget']:.2f} | {label} | "
                         + " | ".join(f"{x:.2f}" for x in sp) + f" | {max(sp) / min(sp):.2f} |")
    return lines


def plot(s: dict, path: Path) -> None:
    """Per-task alpha, worst-task alpha and U against training tokens, one panel row per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks, arms = list(s["config"]["tasks"]), s["arms"]
    fig, axes = plt.subplots(max(1, len(arms)), 2, figsize=(11, 3.2 * max(1, len(arms))),
                             squeeze=False)
    base = s["base"]
    for row, (name, a) in zip(axes, arms.items(), strict=False):
        xs = [0] + [r["tokens"] for r in a["budgets"]]
        for t in tasks:
            row[0].plot(xs, [base["tasks"][t]["alpha"]] + [r["tasks"][t]["alpha"]
                                                           for r in a["budgets"]], marker="o",
                        label=t)
        row[0].set_title(f"{name}: alpha per task")
        row[0].set_xlabel("training tokens")
        row[1].plot(xs, [base["worst_alpha"]["value"]] + [r["worst_alpha"]["value"]
                                                           for r in a["budgets"]], "k-o",
                    label="worst-task alpha")
        row[1].plot(xs, [base["mean_alpha"]["value"]] + [r["mean_alpha"]["value"]
                                                          for r in a["budgets"]], "b-o",
                    label="mean alpha")
        ax2 = row[1].twinx()
        ax2.plot(xs, [base["U"]["value"]] + [r["U"]["value"] for r in a["budgets"]], "r--s",
                 label="U (CE spread)")
        ax2.set_ylabel("U", color="r")
        row[1].set_title(f"{name}: worst, mean alpha and U")
        row[1].set_xlabel("training tokens")
        row[1].legend(loc="lower left", fontsize=7)
    axes[0][0].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def answer(s: dict) -> str:
    """The report's answer, from the numbers at the largest budget."""
    out = ["## Answer", ""]
    for name, a in s["arms"].items():
        r = a["budgets"][-1]
        w = r["d_base_worst_alpha"]
        verdict = ("rises (its paired 95% CI is above 0)" if w["lo"] > 0 else
                   "falls (its paired 95% CI is below 0)" if w["hi"] < 0 else
                   "does not change beyond its paired 95% CI")
        u = r["U_change"]
        out.append(
            f"- {name} at {r['tokens']} tokens: the base-worst task ({r['base_worst_task']}) "
            f"alpha {verdict}: {_fmt(w)}; U changes by {u['value']:+.0%} [{u['lo']:+.0%}, "
            f"{u['hi']:+.0%}]{' (a fall of 30% or more)' if u['hi'] <= -0.30 else ''}; "
            f"mean alpha {_fmt(r['d_mean_alpha'])}.")
    return "\n".join(out + policy_answer(s))


def _spread(r: dict, label: str, task: str) -> tuple[float, float]:
    sp = [v["speedup"] for v in r["policies"][label].values()]
    return r["policies"][label][task]["speedup"], max(sp) / min(sp)


def policy_answer(s: dict) -> list[str]:
    """Drafting policy alone, fine-tuning alone and both, on the base-worst task's predicted
    speed-up and the max/min speed-up ratio across tasks."""
    base, fixed = s["base"], POLICIES[0].label
    w = base["base_worst_task"]
    w0, m0 = _spread(base, fixed, w)
    out = ["", f"Drafting policy against fine-tuning (predicted speed-ups; {w} is the "
               f"base-worst task; base drafter with {fixed}: {w} {w0:.2f}x, max/min {m0:.2f}):"]
    for label in base["policies"]:
        if label != fixed:
            wt, mm = _spread(base, label, w)
            out.append(f"- policy alone, {label}: {w} {wt:.2f}x, max/min {mm:.2f} (no training)")
    for name, a in s["arms"].items():
        r = a["budgets"][-1]
        best = max(r["policies"], key=lambda lab: _spread(r, lab, w)[0])
        (wt, mm), (wb, mb) = _spread(r, fixed, w), _spread(r, best, w)
        out.append(f"- fine-tuning, {name} ({r['tokens']} tokens), with {fixed}: {w} "
                   f"{wt:.2f}x, max/min {mm:.2f}; combined with {best}: {w} {wb:.2f}x, "
                   f"max/min {mb:.2f}")
    return out
