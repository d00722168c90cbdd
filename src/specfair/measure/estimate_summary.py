"""``estimate_summary.json``: an ``estimate.jsonl`` summarized per task, with bootstrap CIs
(as in :mod:`specfair.measure.bench_summary`), and its comparison with a bench summary.

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

from specfair.decoding.policy import policy_table
from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError
from specfair.measure import metrics
from specfair.measure.io import read_records
from specfair.measure.replay import pass_of, predict_policies
from specfair.measure.stats import LEVEL, N_RESAMPLES, bootstrap_ratio_of_means

GAMMAS = tuple(range(1, 9))


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
    records, source = read_records(src)
    seen, uniq = set(), []
    for r in records:
        if r["id"] not in seen:
            seen.add(r["id"])
            uniq.append(r)
    boot = {"n_resamples": n_resamples, "seed": seed, "level": level}
    gammas = sorted(set(gammas) | {gamma})
    tasks = {}
    for task in dict.fromkeys(r["task"] for r in uniq):
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


def _best_gamma(predicted: Mapping) -> tuple[int, float]:
    """(γ, predicted speed-up) of the highest predicted speed-up (the smallest γ on ties)."""
    scored = [(int(g), d["speedup"]) for g, d in predicted.items()
              if d.get("speedup") is not None and math.isfinite(d["speedup"])]  # fmt: skip
    if not scored:
        raise SpecfairError("no predicted speed-ups (no cost ratio c): cannot choose a γ")
    return max(scored, key=lambda gs: (gs[1], -gs[0]))


def policy_from_summary(summary: Mapping, *, split: str) -> dict:
    """``policy.json`` (:mod:`specfair.decoding.policy`) from an estimate summary: per task the
    γ of the highest predicted greedy speed-up (``predicted``), and one global γ maximizing the
    overall (all prompts pooled) one; ``split``: the prompts they were chosen on."""
    per_task = {t: _best_gamma(b["predicted"]) for t, b in summary["tasks"].items()}
    if summary.get("overall") is None:
        raise SpecfairError("no estimate records: cannot choose a γ")
    g_all, s_all = _best_gamma(summary["overall"]["predicted"])
    meta = summary.get("meta", {})
    return policy_table(
        {t: g for t, (g, _) in per_task.items()}, g_all, split=split,
        chosen_by="highest predicted greedy speed-up (estimate_summary.json 'predicted')",
        gammas=meta.get("gammas"), c=meta.get("c"), drafter=meta.get("drafter"),
        target=meta.get("target"), predicted_speedup={t: s for t, (_, s) in per_task.items()},
        predicted_speedup_global=s_all,
    )  # fmt: skip


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
