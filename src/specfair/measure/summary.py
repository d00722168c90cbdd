"""Summaries of ``bench.jsonl`` / ``estimate.jsonl`` with bootstrap CIs, tables, comparison.

Bootstrap: percentile, 2000 resamples, 95 %, seed 0 by default; the resampled unit is the
prompt (a prompt's AR and SD records, or its estimate sums, move together). "overall" pools
all prompts of all tasks (so tasks with more prompts weigh more).

Per-task quantities in ``bench_summary.json`` (formulas in :mod:`specfair.measure.metrics`):

* ``speedup``      = mean SD tok/s ÷ mean AR tok/s (Spec-Bench), CI by joint resampling;
* ``speedup_tokw`` = (Σ SD tokens / Σ SD s) ÷ (Σ AR tokens / Σ AR s);
* ``alpha``        = Σ accepted / Σ drafted (pooled over all draft steps);
* ``alpha_tested`` = Σ accepted / (Σ accepted + Σ rejections): the per-position acceptance
  rate over the draft positions actually verified before the first rejection of each step —
  the quantity comparable with a per-position estimate (accepted/drafted is lower, since the
  drafts after a rejection count as drafted but are never tested);
* ``tau``          = Σ accepted_lengths / #steps (tokens per target verify step, bonus incl.).

``estimate_summary.json`` pools positions: α = Σ_prompts alpha_sum / Σ_prompts n_positions
(position-weighted, like the pooled bench α; CI by resampling prompts), likewise
``greedy_alpha``, ``ce``, ``kl``. ``predicted[γ]`` applies Leviathan's formulas to the greedy
α (what greedy SD accepts); ``predicted_sampling[γ]`` to the temperature-T α.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from specfair.defaults import DEFAULT_GAMMA
from specfair.measure import metrics
from specfair.measure.io import read_jsonl
from specfair.measure.replay import pass_of, predict_policies
from specfair.measure.stats import (
    LEVEL,
    N_RESAMPLES,
    bootstrap_ratio_of_means,
    bootstrap_ratio_of_ratios,
)

GAMMAS = tuple(range(1, 9))


def _records(src: str | Path | Iterable[dict]) -> tuple[list[dict], str | None]:
    if isinstance(src, str | Path):
        return read_jsonl(src), str(src)
    return list(src), None


def _tasks_in_order(records: Iterable[dict]) -> list[str]:
    out: dict[str, None] = {}
    for r in records:
        out.setdefault(r["task"], None)
    return list(out)


# ------------------------------------------------------------------------------ bench


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
    }


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
    records, source = _records(src)
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
    for task in _tasks_in_order(records):
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
            "temperature": distinct("temperature"),
            "max_new_tokens": distinct("max_new_tokens"),
            "bootstrap": {"method": "percentile, prompts resampled", **boot},
        },
        "tasks": tasks,
        "overall": _bench_block(list(pairs.values()), boot) if pairs else None,
        "disparity": disp,
    }


# ------------------------------------------------------------------------------ estimate


def _predict(alpha: Mapping, gammas: Sequence[int], c: float | None) -> dict:
    out = {}
    for g in gammas:
        tau = metrics.expected_tau(alpha["mean"], g)
        d = {
            "tau": tau,
            "tau_lo": metrics.expected_tau(alpha["lo"], g),
            "tau_hi": metrics.expected_tau(alpha["hi"], g),
        }
        if c is not None:
            d["speedup"] = metrics.expected_speedup(alpha["mean"], g, c)
            d["speedup_lo"] = metrics.expected_speedup(alpha["lo"], g, c)
            d["speedup_hi"] = metrics.expected_speedup(alpha["hi"], g, c)
        else:
            d["speedup"] = d["speedup_lo"] = d["speedup_hi"] = float("nan")
        out[str(g)] = d
    return out


def _estimate_block(recs: Sequence[dict], boot: dict, gammas, c) -> dict:
    n_pos = np.array([r["n_positions"] for r in recs], dtype=float)

    def pooled(key):
        return bootstrap_ratio_of_means(
            np.array([r[key] for r in recs], dtype=float), n_pos, **boot
        )

    block = {
        "n": len(recs),
        "n_positions": int(n_pos.sum()),
        "alpha": pooled("alpha_sum"),
        "greedy_alpha": pooled("greedy_match_sum"),
        "ce": pooled("ce_sum"),
        "kl": pooled("kl_sum"),
    }
    block["predicted"] = _predict(block["greedy_alpha"], gammas, c)
    block["predicted_sampling"] = _predict(block["alpha"], gammas, c)
    if c is not None and recs and all("passes" in r for r in recs):
        # drafting policies replayed on the teacher-forced passes (greedy), with a verification
        # costing one target step as in ``predicted`` (Leviathan's formula)
        block["policies"] = predict_policies(
            [pass_of(p) for r in recs for p in r["passes"]], c, 0.0)
    return block


def summarize_estimate(
    src: str | Path | Iterable[dict],
    *,
    c: float | None,
    gamma: int = DEFAULT_GAMMA,
    gammas: Sequence[int] = GAMMAS,
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
    level: float = LEVEL,
    meta: Mapping | None = None,
) -> dict:
    """``estimate_summary.json`` from an ``estimate.jsonl`` path or records.

    ``c`` is the drafter/target cost ratio (None: speed-ups are nan). The disparity block is
    over the per-task predicted greedy speed-ups at ``gamma`` (or, without ``c``, over the
    predicted τ), plus ``ce_spread`` (population variance across tasks of the mean CE,
    Sandler et al. 2025) and ``kl_spread`` (same for KL).
    """
    records, source = _records(src)
    seen, uniq = set(), []
    for r in records:
        if r["id"] not in seen:
            seen.add(r["id"])
            uniq.append(r)
    boot = {"n_resamples": n_resamples, "seed": seed, "level": level}
    gammas = sorted(set(gammas) | {gamma})
    tasks = {}
    for task in _tasks_in_order(uniq):
        tasks[task] = _estimate_block([r for r in uniq if r["task"] == task], boot, gammas, c)
    key = "speedup" if c is not None else "tau"
    disp = metrics.disparity({t: b["predicted"][str(gamma)][key] for t, b in tasks.items()})
    disp["of"] = f"predicted greedy {key} at gamma={gamma}"
    disp["ce_spread"] = metrics.ce_spread({t: b["ce"]["mean"] for t, b in tasks.items()})
    disp["kl_spread"] = metrics.population_variance([b["kl"]["mean"] for b in tasks.values()])
    temps = list(dict.fromkeys(r.get("temperature") for r in uniq))
    drafters = list(dict.fromkeys(r.get("drafter") for r in uniq))
    return {
        "meta": {
            "c": c,
            "gamma": gamma,
            "gammas": list(gammas),
            "source": source,
            "n_prompts": len(uniq),
            "drafter": drafters[0] if len(drafters) == 1 else drafters,
            "temperature": temps[0] if len(temps) == 1 else temps,
            "weighting": "positions pooled (sum over prompts / total positions)",
            "predicted_from": "greedy_alpha (predicted_sampling: alpha)",
            "theory": "Leviathan et al. 2023: tau=(1-a^(g+1))/(1-a), S=tau/(g*c+1)",
            "bootstrap": {"method": "percentile, prompts resampled", **boot},
            **(dict(meta) if meta else {}),
        },
        "tasks": tasks,
        "overall": _estimate_block(uniq, boot, gammas, c) if uniq else None,
        "disparity": disp,
    }


# ------------------------------------------------------------------------------ comparison


def _within(x, ci) -> bool | None:
    if (
        x is None
        or ci is None
        or any(
            v is None or (isinstance(v, float) and math.isnan(v)) for v in (x, ci["lo"], ci["hi"])
        )
    ):
        return None
    return bool(ci["lo"] <= x <= ci["hi"])


def compare_estimate_to_bench(
    est_summary: Mapping, bench_summary: Mapping, *, key: str = "greedy_alpha"
) -> list[dict]:
    """Per task present in both: the estimated per-position acceptance (``key``, default the
    greedy agreement) against the measured per-position acceptance ``alpha_tested`` and its
    bootstrap CI (``within_ci``); the predicted accepted/drafted ``(E[τ]-1)/γ`` against the
    measured ``alpha``; predicted τ and speed-up at the bench γ against the measured ones
    (``tau_within_ci``, ``speedup_within_ci``).
    """
    gamma = bench_summary.get("meta", {}).get("gamma")
    rows = []
    for task, b in bench_summary.get("tasks", {}).items():
        e = est_summary.get("tasks", {}).get(task)
        if e is None:
            continue
        est = e[key]["mean"]
        measured = b.get("alpha_tested") or b["alpha"]
        row = {
            "task": task,
            "estimated_alpha": est,
            "estimated_lo": e[key]["lo"],
            "estimated_hi": e[key]["hi"],
            "measured_alpha": measured["mean"],
            "lo": measured["lo"],
            "hi": measured["hi"],
            "within_ci": _within(est, measured),
            "diff": (est - measured["mean"])
            if est is not None and measured["mean"] is not None
            else None,
        }
        pred = e.get("predicted") if key == "greedy_alpha" else e.get("predicted_sampling")
        if isinstance(gamma, int) and pred and str(gamma) in pred:
            p = pred[str(gamma)]
            row["predicted_alpha_drafted"] = (
                (p["tau"] - 1.0) / gamma if p.get("tau") is not None else None
            )
            row["measured_alpha_drafted"] = b["alpha"]["mean"]
            row["alpha_drafted_within_ci"] = _within(row["predicted_alpha_drafted"], b["alpha"])
            row["predicted_tau"] = p["tau"]
            row["measured_tau"] = b["tau"]["mean"]
            row["tau_within_ci"] = _within(p["tau"], b["tau"])
            row["predicted_speedup"] = p.get("speedup")
            row["measured_speedup"] = b["speedup"]["mean"]
            row["speedup_within_ci"] = _within(p.get("speedup"), b["speedup"])
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------ tables


def _fmt(ci: Mapping | None, digits: int = 2) -> str:
    if (
        not ci
        or ci.get("mean") is None
        or (isinstance(ci["mean"], float) and math.isnan(ci["mean"]))
    ):
        return "–"
    s = f"{ci['mean']:.{digits}f}"
    lo, hi = ci.get("lo"), ci.get("hi")
    if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


def _num(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def print_bench_table(summary: Mapping, console=None) -> None:
    """A rich table: per task n, AR/SD tok/s, speed-up [95 % CI], token-weighted speed-up,
    α, τ; the overall row; then the disparity line."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    m = summary.get("meta", {})
    t = Table(
        title=f"AR vs SD  (drafter {m.get('drafter')}, γ={m.get('gamma')}, "
        f"T={m.get('temperature')})"
    )
    for col in (
        "task",
        "n",
        "AR tok/s",
        "SD tok/s",
        "speed-up [95% CI]",
        "tok-w speed-up",
        "α acc/drafted",
        "τ",
    ):
        t.add_column(col, justify="left" if col == "task" else "right")

    def row(name, b, style=None):
        t.add_row(
            name,
            str(b["n"]),
            _num(b["ar_tps"], 1),
            _num(b["sd_tps"], 1),
            _fmt(b["speedup"]),
            _fmt(b["speedup_tokw"]),
            _fmt(b["alpha"]),
            _fmt(b["tau"]),
            style=style,
        )

    for name, b in summary.get("tasks", {}).items():
        row(name, b)
    if summary.get("overall"):
        t.add_section()
        row("overall", summary["overall"], style="bold")
    console.print(t)
    d = summary.get("disparity", {})
    console.print(
        f"worst task: [bold]{d.get('worst_task')}[/] ({_num(d.get('worst_speedup'))}×)   "
        f"max/min: {_num(d.get('max_min_ratio'))}   CV: {_num(d.get('cv'), 3)}   "
        f"Gini: {_num(d.get('gini'), 3)}"
    )


def print_estimate_table(
    summary: Mapping, console=None, comparison: list[dict] | None = None
) -> None:
    """A rich table: per task n, positions, α, greedy α, CE, KL, predicted τ and speed-up at
    the summary's γ; then the disparity line (incl. ce_spread); optionally the comparison."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    m = summary.get("meta", {})
    g = str(m.get("gamma"))
    c = m.get("c")
    t = Table(
        title=f"Teacher-forced estimate  (drafter {m.get('drafter')}, T={m.get('temperature')}"
        f", c={_num(c, 3)}, γ={g})"
    )
    for col in ("task", "n", "positions", "α", "greedy α", "CE", "KL", f"τ̂ γ={g}", f"Ŝ γ={g}"):
        t.add_column(col, justify="left" if col == "task" else "right")

    def row(name, b, style=None):
        p = b["predicted"].get(g, {})
        t.add_row(
            name,
            str(b["n"]),
            str(b["n_positions"]),
            _fmt(b["alpha"], 3),
            _fmt(b["greedy_alpha"], 3),
            _fmt(b["ce"], 3),
            _fmt(b["kl"], 3),
            _num(p.get("tau")),
            _num(p.get("speedup")),
            style=style,
        )

    for name, b in summary.get("tasks", {}).items():
        row(name, b)
    if summary.get("overall"):
        t.add_section()
        row("overall", summary["overall"], style="bold")
    console.print(t)
    d = summary.get("disparity", {})
    console.print(
        f"worst task: [bold]{d.get('worst_task')}[/] ({_num(d.get('worst_speedup'))})   "
        f"max/min: {_num(d.get('max_min_ratio'))}   CV: {_num(d.get('cv'), 3)}   "
        f"Gini: {_num(d.get('gini'), 3)}   CE spread: {_num(d.get('ce_spread'), 4)}"
    )
    if comparison:
        ct = Table(title="estimated greedy α vs measured (per verified position)")
        for col in ("task", "estimated", "measured [95% CI]", "within CI", "Ŝ", "S measured"):
            ct.add_column(col, justify="left" if col == "task" else "right")
        for r in comparison:
            ct.add_row(
                r["task"],
                _num(r["estimated_alpha"], 3),
                _fmt({"mean": r["measured_alpha"], "lo": r["lo"], "hi": r["hi"]}, 3),
                {True: "yes", False: "no", None: "–"}[r["within_ci"]],
                _num(r.get("predicted_speedup")),
                _num(r.get("measured_speedup")),
            )
        console.print(ct)
