"""The tables and paired statistics of ``benchmarks/engine.py`` (split from it): speed-ups per
variant and task with bootstrap CIs, each variant against HF assisted generation, a variant
against another on the same prompts (``paired_ratio``: ``adaptive`` against ``adaptive-flat``),
and the printed report."""

from __future__ import annotations

import statistics

import numpy as np
from rich.table import Table


def geo_ci(logs: np.ndarray, rng, n_boot: int = 2000) -> dict:
    """The geometric mean of ratios given as ``logs`` with a bootstrap 95 % CI over them
    (``rng`` draws the resamples): ``{"ratio", "n", "ci"}``."""
    boot = logs[rng.integers(0, len(logs), (n_boot, len(logs)))].mean(axis=1)
    return {"ratio": float(np.exp(logs.mean())), "n": len(logs),
            "ci": [float(np.exp(np.quantile(boot, q))) for q in (0.025, 0.975)]}


def against_hf(records: list[dict], n_boot: int = 2000) -> dict[str, dict]:
    """Each SD variant's tokens/s over HF assisted generation's (defaults) on the same prompts:
    the geometric mean of the per-prompt ratios with a bootstrap 95 % CI over prompts, and the
    variant's worst task (mean speed-up over specfair AR)."""
    rows = [r for r in records if r.get("hf_sd", {}).get("tps")]
    labels = ["sd"] + list(dict.fromkeys(k for r in rows for k in r.get("variants", {})))
    speedups = variant_speedups(records)
    out = {}
    rng = np.random.default_rng(0)
    for label in labels:
        tps = [(r["sd"] if label == "sd" else r["variants"][label])["tps"] for r in rows]
        g = geo_ci(np.log(np.array(tps) / np.array([r["hf_sd"]["tps"] for r in rows])), rng,
                   n_boot)
        by_task = speedups.get(label) if label != "sd" else None
        if by_task is None:
            by: dict[str, list] = {}
            for r in records:
                by.setdefault(r["task"], []).append(r["speedup"])
            by_task = {t: statistics.mean(x) for t, x in by.items()}
        worst = min((t for t in by_task if t != "overall"), key=by_task.get)
        out[label] = {"vs_hf": g["ratio"], "ci": g["ci"],
                      "worst_task": worst, "worst_speedup": by_task[worst]}
    return out


def hf_report(records: list[dict], console) -> None:
    res = against_hf(records)
    if not res:
        return
    table = Table(title="SD variants against HF assisted generation (defaults), same prompts")
    for col in ("variant", "t/s ratio vs HF (geo. mean)", "95% CI", "worst task",
                "its speed-up vs AR"):
        table.add_column(col)
    for label, d in res.items():
        table.add_row(label, fmt(d["vs_hf"]), f"[{d['ci'][0]:.2f}, {d['ci'][1]:.2f}]",
                      d["worst_task"], fmt(d["worst_speedup"]))
    console.print(table)


def variant_speedups(records: list[dict]) -> dict[str, dict[str, float]]:
    """{variant: {task: mean speed-up over the task's prompts, ..., "overall": mean over all
    prompts}} from the records' ``variants``."""
    out: dict[str, dict[str, list]] = {}
    for r in records:
        for label, v in r.get("variants", {}).items():
            if v.get("speedup") is not None:
                out.setdefault(label, {}).setdefault(r["task"], []).append(v["speedup"])
                out[label].setdefault("overall", []).append(v["speedup"])
    return {label: {t: statistics.mean(xs) for t, xs in by.items()} for label, by in out.items()}


def task_speedup_cis(records: list[dict], n_boot: int = 2000) -> dict[str, dict]:
    """Per label (``sd`` = fixed γ, each variant, ``hf_sd`` = HF assisted generation with its
    defaults where it ran): each task's mean speed-up over our AR with a
    95 % bootstrap CI over its prompts, and the max/min ratio of the task means with a CI
    (prompts resampled within each task; the argmax/argmin tasks are re-chosen per resample)."""
    import numpy as np

    labels = ["sd"] + list(dict.fromkeys(k for r in records for k in r.get("variants", {})))
    labels.append("hf_sd")
    rng = np.random.default_rng(0)
    out = {}

    def speedup(r: dict, label: str) -> float | None:
        if label == "sd":
            return r["speedup"]
        if label == "hf_sd":
            tps, ar = r.get("hf_sd", {}).get("tps"), r.get("ar", {}).get("tps")
            return tps / ar if tps and ar else None
        return r.get("variants", {}).get(label, {}).get("speedup")

    for label in labels:
        by: dict[str, list[float]] = {}
        for r in records:
            v = speedup(r, label)
            if v is not None:
                by.setdefault(r["task"], []).append(v)
        if not by:
            continue
        boots = {t: np.array(x)[rng.integers(0, len(x), (n_boot, len(x)))].mean(axis=1)
                 for t, x in by.items()}
        means = {t: float(np.mean(x)) for t, x in by.items()}
        stack = np.stack(list(boots.values()))
        ratio = stack.max(axis=0) / stack.min(axis=0)
        q = lambda a: [float(np.quantile(a, 0.025)), float(np.quantile(a, 0.975))]  # noqa: E731
        out[label] = {
            "tasks": {t: {"mean": means[t], "ci": q(boots[t]), "n": len(by[t])} for t in by},
            "max_min": max(means.values()) / min(means.values()), "max_min_ci": q(ratio),
            "best": max(means, key=means.get), "worst": min(means, key=means.get)}
    return out


def variant_report(records: list[dict], console) -> None:
    speedups = variant_speedups(records)
    if not speedups:
        return
    tasks = list(dict.fromkeys(r["task"] for r in records)) + ["overall"]
    table = Table(title="speed-up over specfair AR per task (mean over prompts), per variant")
    table.add_column("variant")
    for t in tasks:
        table.add_column(t, justify="right")
    for label, by in speedups.items():
        table.add_row(label, *(fmt(by.get(t)) for t in tasks))
    console.print(table)


def fmt(x, spec=".2f") -> str:
    return "-" if x is None else format(x, spec)


def overall(records: list[dict]) -> str:
    """Mean tokens/s over the prompts of each mode, and the ratios the issue asks for."""

    def mean_tps(key):
        vals = [r[key]["tps"] for r in records if isinstance(r.get(key), dict) and "tps" in r[key]]
        return statistics.mean(vals) if len(vals) == len(records) else None

    m = {k: mean_tps(k) for k in ("ar", "sd", "sd_conf", "hf_ar", "hf_sd", "hf_sd_g")}
    meas = [r["speedup"] for r in records if r.get("speedup")]
    pv = [r["predicted_speedup_v"] for r in records if r.get("predicted_speedup_v")]
    lines = ["mean tokens/s: " + ", ".join(f"{k} {fmt(v)}" for k, v in m.items())]
    if m["sd"] and m["hf_sd"]:
        lines.append(f"specfair SD / HF assisted (defaults): {m['sd'] / m['hf_sd']:.2f}x")
    if m["sd"] and m["hf_sd_g"]:
        lines.append(f"specfair SD / HF assisted (same gamma): {m['sd'] / m['hf_sd_g']:.2f}x")
    if m["sd_conf"] and m["hf_sd"]:
        lines.append(
            f"specfair SD (HF's default algorithm) / HF assisted (defaults): "
            f"{m['sd_conf'] / m['hf_sd']:.2f}x"
        )
    if m["sd"] and m["ar"]:
        lines.append(f"specfair SD / specfair AR (Spec-Bench speed-up): {m['sd'] / m['ar']:.2f}x")
    if meas and pv:
        ratio = statistics.mean(a / b for a, b in zip(meas, pv, strict=False))
        lines.append(f"measured / predicted (with measured verify cost): {ratio:.2f}")
    return "\n".join(lines)


def report(records: list[dict], args, console) -> None:
    table = Table(
        title=f"specfair engine, greedy, gamma={args.gamma}, max_new_tokens={args.max_new_tokens}"
    )
    for col in (
        "id",
        "task",
        "AR t/s",
        "SD t/s",
        "SD conf t/s",
        "speed-up",
        "pred.",
        "pred. v",
        "alpha",
        "alpha_geo",
        "tau",
        "c",
        "HF AR t/s",
        "HF SD t/s",
        f"HF SD g={args.gamma}",
        "SD=AR",
        "SD=HF",
    ):
        table.add_column(col, justify="right" if col not in ("id", "task") else "left")
    for r in records:
        table.add_row(
            r["id"],
            r["task"],
            fmt(r["ar"]["tps"]),
            fmt(r["sd"]["tps"]),
            fmt(r.get("sd_conf", {}).get("tps")),
            fmt(r["speedup"]),
            fmt(r.get("predicted_speedup")),
            fmt(r.get("predicted_speedup_v")),
            fmt(r["alpha"]),
            fmt(r["alpha_geometric"]),
            fmt(r["tau"]),
            fmt(r.get("c"), ".3f"),
            fmt(r.get("hf_ar", {}).get("tps")),
            fmt(r.get("hf_sd", {}).get("tps")),
            fmt(r.get("hf_sd_g", {}).get("tps")),
            fmt(r["match_sd_ar"]),
            fmt(r.get("match_sd_hf")),
        )
    console.print(table)
    console.print(overall(records))

    over = Table(title="time split per step (ms): other = wall - prefill - sum(draft + verify)")
    for col in ("mode", "steps", "prefill", "draft", "verify", "other", "other / step %"):
        over.add_column(col, justify="right")
    for mode in ("sd", "ar"):
        sp = [r[f"split_{mode}"] for r in records]
        steps = sum(s["steps"] for s in sp)
        mean = {
            k: statistics.mean(s[k] for s in sp) * 1e3
            for k in ("prefill_s", "draft_s", "verify_s", "other_s")
        }
        total = mean["draft_s"] + mean["verify_s"] + mean["other_s"]
        over.add_row(
            mode,
            str(steps),
            f"{mean['prefill_s']:.1f}",
            f"{mean['draft_s']:.2f}",
            f"{mean['verify_s']:.2f}",
            f"{mean['other_s']:.3f}",
            f"{100 * mean['other_s'] / total:.2f}" if total else "-",
        )
    console.print(over)
    variant_report(records, console)
    hf_report(records, console)
    for label, d in task_speedup_cis(records).items():
        cells = ", ".join(f"{t} {v['mean']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]"
                          for t, v in sorted(d["tasks"].items(), key=lambda kv: kv[1]["mean"]))
        console.print(f"{label}: max/min {d['max_min']:.2f} [{d['max_min_ci'][0]:.2f}, "
                      f"{d['max_min_ci'][1]:.2f}]; per task: {cells}")
    for label, d in adaptive_pairs(records).items():
        cells = ", ".join(f"{t} {v['ratio']:.2f} [{v['ci'][0]:.2f}, {v['ci'][1]:.2f}]"
                          for t, v in sorted(d["tasks"].items(), key=lambda kv: kv[1]["ratio"]))
        console.print(f"{label} (paired t/s): {d['ratio']:.2f} [{d['ci'][0]:.2f}, "
                      f"{d['ci'][1]:.2f}]; per task: {cells}")


def paired_ratio(records: list[dict], a: str, b: str, n_boot: int = 2000) -> dict | None:
    """Variant ``a``'s tokens/s over variant ``b``'s on the same prompts: the geometric mean of
    the per-prompt ratios with a bootstrap 95 % CI over prompts, overall and per task (None
    when no prompt has both)."""
    rows = [r for r in records if all(r.get("variants", {}).get(v, {}).get("tps")
                                      for v in (a, b))]  # fmt: skip
    if not rows:
        return None
    rng = np.random.default_rng(0)

    def geo(logs: np.ndarray) -> dict:
        return geo_ci(logs, rng, n_boot)

    logs = np.log([r["variants"][a]["tps"] / r["variants"][b]["tps"] for r in rows])
    tasks = [r["task"] for r in rows]
    return geo(logs) | {"tasks": {t: geo(logs[[x == t for x in tasks]])
                                  for t in dict.fromkeys(tasks)}}  # fmt: skip


def adaptive_pairs(records: list[dict]) -> dict[str, dict]:
    """``adaptive+P`` against ``adaptive-flat+P`` (the rule with the verify curve against the
    one before it), for each proposer P both ran with."""
    labels = list(dict.fromkeys(k for r in records for k in r.get("variants", {})))
    out = {}
    for label in labels:
        flat = label.replace("adaptive+", "adaptive-flat+", 1)
        if label.startswith("adaptive+") and flat in labels:
            got = paired_ratio(records, label, flat)
            if got is not None:
                out[f"{label} / {flat}"] = got
    return out
