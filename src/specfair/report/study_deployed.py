"""The report's section on the policies users deploy (issue 29, item 5), from ``timed.json``'s
``policies`` and ``hf_assisted`` blocks (:mod:`specfair.study.timed_policies`): the measured
speed-up per task of each timed drafter under each drafting policy and of HF assisted
generation with its defaults, beside each other, with max/min and the worst task; each arm's
paired gain over the base drafter under each policy; each against HF assisted generation.
Nothing for a run that timed the stage's own fixed γ only (its section is the timed one)."""

from __future__ import annotations

from specfair.report.doc import Block, Heading, Para, Table
from specfair.report.study_metrics import mean_ci, num

HF = "HF assisted"


_f, _x = num, mean_ci


def _shown(t: dict) -> bool:
    pol = t.get("policies") or {}
    return len(pol) > 1 or t.get("hf_assisted") is not None


def _worst(d: dict) -> str:
    w = d.get("worst_task")
    return f"{w} ({_x(d['tasks'][w]['speedup'])}x)" if w else "–"


def deployed_answer(t: dict | None) -> list[str]:
    """Per policy: each drafter's max/min and worst task, each arm's gain over the base
    drafter over all prompts and on the base drafter's worst task; HF assisted generation's."""
    if not t or not _shown(t):
        return []
    out = []
    for label, pol in t["policies"].items():
        ds = pol["drafters"]
        parts = [f"{n} max/min {_f(d['max_min'])}, slowest on {_worst(d)}" for n, d in ds.items()]
        worst = (ds.get("base") or {}).get("worst_task")
        for n, d in ds.items():
            if n != "base" and d.get("vs_base_overall"):
                on = d["tasks"].get(worst, {}).get("vs_base")
                parts.append(f"{n} ÷ base {_x(d['vs_base_overall'], 3)} over all prompts"
                             + (f", {_x(on, 3)} on {worst}" if on else "")
                             + " (paired 95% CI)")
        out.append(f"Under {label} (measured, {t['max_new_tokens']} new tokens): "
                   + "; ".join(parts) + ".")
    if (hf := t.get("hf_assisted")) is not None:
        out.append(f"{HF} generation (its defaults, the base drafter): max/min "
                   f"{_f(hf['max_min'])}, slowest on {_worst(hf)}, all prompts "
                   f"{_x(hf['overall'])}x plain decoding.")
    return out


def deployed_blocks(t: dict | None) -> list[Block]:
    """The section: speed-ups per task (drafter × policy, HF assisted), the gains over the base
    drafter, the ratios to HF assisted generation."""
    if not t or not _shown(t):
        return []
    pols, hf = t["policies"], t.get("hf_assisted")
    tasks = list(dict.fromkeys(k for p in pols.values() for d in p["drafters"].values()
                               for k in d["tasks"]))
    cols = [(label, n, d) for label, p in pols.items() for n, d in p["drafters"].items()]
    heads = [f"{n}, {label}" for label, n, _ in cols] + ([HF] if hf else [])
    blocks = [d for _, _, d in cols] + ([hf] if hf else [])
    rows = [[task, *(_x(b["tasks"].get(task, {}).get("speedup")) for b in blocks)]
            for task in tasks]
    rows.append(["all prompts", *(_x(b["overall"]) for b in blocks)])
    rows.append(["max/min", *(_f(b["max_min"]) for b in blocks)])
    rows.append(["worst task", *(b.get("worst_task") or "–" for b in blocks)])
    out: list[Block] = [
        Heading("Measured speed-ups under the deployed policies"),
        Para("Every timed drafter (the base drafter and each arm's at the largest budget, first "
             "seed) under each drafting policy of `timed_policies` (POLICY+PROPOSER, as "
             "`specfair bench --policy/--proposer`; adaptive priced on this run's measured "
             "verify curve)" + (f", and {HF} generation with its default settings (the base "
             "drafter as assistant)" if hf else "") + ": for each prompt one plain-decoding "
             "run, then every drafter and policy, so every speed-up is against the same AR "
             "run.", kind="note"),
        Table(["task", *heads], rows, f"Measured speed-up (SD ÷ AR tokens/s, 95% bootstrap CI "
              f"over prompts), greedy, {t['max_new_tokens']} new tokens, up to "
              f"{t['n_per_task']} test prompts per task", ["l"] + ["r"] * len(heads))]
    gains = [(label, n, d) for label, n, d in cols if n != "base" and "vs_base_overall" in d]
    if gains:
        rows = [[task, *(_x(d["tasks"].get(task, {}).get("vs_base"), 3) for _, _, d in gains)]
                for task in tasks]
        rows.append(["all prompts", *(_x(d["vs_base_overall"], 3) for _, _, d in gains)])
        out.append(Table(["task", *(f"{n} ÷ base, {label}" for label, n, _ in gains)], rows,
                         "Each arm's speed-up ÷ the base drafter's under the same policy, same "
                         "prompts and AR runs (paired 95% CI; above 1: the tuned drafter is "
                         "faster)", ["l"] + ["r"] * len(gains)))
    if hf:
        vs = [(label, n, d["vs_hf"]) for label, n, d in cols if d.get("vs_hf")]
        rows = [[task, *(_x(v["tasks"].get(task), 3) for _, _, v in vs)] for task in tasks]
        rows.append(["all prompts", *(_x(v["overall"], 3) for _, _, v in vs)])
        out.append(Table(["task", *(f"{n}, {label}" for label, n, _ in vs)], rows,
                         f"Each drafter and policy ÷ {HF} generation (SD tokens/s, same prompts, "
                         "paired 95% CI; above 1: faster than HF's defaults)",
                         ["l"] + ["r"] * len(vs)))
    return out
