"""The experiment's report, rebuilt from its stored records alone: ``summary.json``
(:mod:`specfair.study.summary`), ``timed.json`` (:mod:`specfair.study.timed`, absent when
nothing was timed) and ``routing.json`` (:mod:`specfair.study.routing`, absent without the
per-task arm) → one list of blocks (:mod:`.doc`) written twice: ``report.md`` (figures
under ``figures/``) and the self-contained ``report.html`` (:mod:`.html`).

Sections: the answer (the primary metrics first, then the secondary ones, the data dose, the
measured speed-ups and the drafting policies); the primary metrics (greedy alpha and predicted
speed-up per task with paired CIs, sampled-alpha bounds, spreads, U under Sandler et al.'s
definition: :mod:`.study_metrics`); the dose-response figure (greedy alpha per task against
training tokens, with paired CIs) and slopes; the dose in data (figure and slopes); sampled
alpha (upper bound) per task and its paired changes, beside the CE spread on the top-k buckets
(never called U); the task routing (:mod:`.study_routing`: the router's accuracy, the copy ×
task matrix, routed against oracle routing); the measured speed-ups (timed: a figure and
tables with CIs; paired against the base drafter; predicted against measured; how the per-task
drafter was routed; under the deployed policies and HF assisted generation:
:mod:`.study_deployed`); the drafting policies (predicted); setup notes (overfit check, leak checks
of prompts and training texts, bootstrap and seeds).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specfair.atomic import real_dir, write_bytes, write_text
from specfair.errors import SpecfairError
from specfair.measure.io import read_json
from specfair.measure.replay import ONE_HELD, ONE_ORACLE, TASK_HELD, TASK_ORACLE
from specfair.report.doc import Block, Bullets, Figure, Heading, Para, Table, to_markdown
from specfair.report.html import to_html
from specfair.report.study_deployed import deployed_answer, deployed_blocks
from specfair.report.study_dose import (
    answer_power,
    answer_token_dose,
    matched_arms_blocks,
    power_blocks,
    power_check_blocks,
    token_dose_blocks,
    training_blocks,
)
from specfair.report.study_dose_answer import ANSWER_FIGURE, dose_answer_blocks
from specfair.report.study_figures import data_dose_figure, dose_figure, speedup_figure
from specfair.report.study_index import same_data_answer, same_data_blocks
from specfair.report.study_metrics import (
    TOKENS_HEAD,
    _fmt,
    answer_dose,
    answer_primary,
    answer_u,
    curve_table,
    data_dose_blocks,
    mean_ci,
    num,
    primary_blocks,
    tokens_cell,
    tokens_seen,
)
from specfair.report.study_routing import routing_answer, routing_blocks

FIGURES = "figures"
DOSE_FIGURE, SPEEDUP_FIGURE, DATA_DOSE_FIGURE = "dose_response.png", "speedup.png", "data_dose.png"


_f, _x = num, mean_ci  # the study report's short names


# ----------------------------------------------------------------------------- answer


def answer(s: dict) -> list[str]:
    """Per arm at the largest budget: the primary metrics (:func:`.study_metrics.answer_primary`)
    first, then the secondary ones (U under Sandler et al.'s definition, sampled alpha, an
    upper bound, and the CE spread on the top-k buckets); then the data dose's verdict."""
    out = []
    for name, a in s["arms"].items():
        r = a["budgets"][-1]
        w = r["d_base_worst_alpha"]
        verdict = ("rises (its paired 95% CI is above 0)" if w["lo"] > 0 else
                   "falls (its paired 95% CI is below 0)" if w["hi"] < 0 else
                   "does not change beyond its paired 95% CI")
        u = r["ce_spread_topk_change"]
        out += answer_primary(name, r)
        out.append(
            f"**{name}**, secondary: {answer_u(r)}; the base-worst task ({r['base_worst_task']}) "
            f"sampled alpha (upper bound) {verdict}: {_fmt(w)}; mean sampled alpha "
            f"{_fmt(r['d_mean_alpha'])}; the CE spread on the top-k buckets (the loss's own "
            f"quantity, not U, not an outcome) changes by {u['value']:+.0%} [{u['lo']:+.0%}, "
            f"{u['hi']:+.0%}].")
    return out + (answer_token_dose(s) or answer_dose(s)) + answer_power(s)


def timed_answer(t: dict) -> list[str]:
    """The measured side: the base drafter's slowest and fastest task, and per arm the
    tasks whose measured speed-up moved beyond its paired CI."""
    base = t["drafters"].get("base")
    if not base:
        return []
    sp = {k: v["speedup"]["mean"] for k, v in base["tasks"].items()}
    lo, hi = min(sp, key=sp.get), max(sp, key=sp.get)
    out = [f"Measured ({t['policy']}, up to {t['n_per_task']} prompts per task): the base drafter "
           f"is slowest on {lo} ({_x(base['tasks'][lo]['speedup'])}x) and fastest on {hi} "
           f"({_x(base['tasks'][hi]['speedup'])}x), max/min {_f(base['max_min'])}."]
    for name, d in t["drafters"].items():
        if name == "base":
            continue
        ci = {k: v["vs_base"] for k, v in d["tasks"].items() if v["vs_base"] and v["n"] >= 2}
        up = [k for k, v in ci.items() if v["lo"] > 1]
        down = [k for k, v in ci.items() if v["hi"] < 1]
        w = d["tasks"].get(lo, {}).get("vs_base")
        out.append(f"{name}: on {lo} its speed-up is {_x(w)} times the base drafter's "
                   f"(paired 95% CI); faster beyond the CI: {', '.join(up) or 'no task'}; "
                   f"slower beyond the CI: {', '.join(down) or 'no task'}"
                   f"{'' if len(ci) == len(d['tasks']) else ' (tasks timed on one prompt: no CI)'}"
                   f"; max/min {_f(d['max_min'])}.")
    return out


# ----------------------------------------------------------------------------- policies


def _spread(r: dict, label: str, task: str) -> tuple[float, float]:
    sp = [v["speedup"] for v in r["policies"][label].values()]
    return r["policies"][label][task]["speedup"], max(sp) / min(sp)


def _gammas(per: dict[str, dict]) -> str:
    gs = {v["gamma"] for v in per.values()}
    return f"gamma={gs.pop()}" if len(gs) == 1 else \
        "gammas " + ", ".join(f"{t} {v['gamma']}" for t, v in per.items())


def _one_vs_per(r: dict) -> list[str]:
    """One gamma for all tasks against a gamma per task, out of sample and in sample."""
    out = []
    for how, one, per in (("out of sample (chosen on the held-out passes, scored on test)",
                           ONE_HELD, TASK_HELD),
                          ("in-sample oracle (chosen on the test passes themselves)",
                           ONE_ORACLE, TASK_ORACLE)):
        if one not in r["policies"]:
            out.append(f"one gamma against a gamma per task, {how}: not recorded in this run "
                       "(no held-out passes)")
            continue
        cells = []
        for label in (one, per):
            sp = [v["speedup"] for v in r["policies"][label].values()]
            cells.append(f"{label.split(' (')[0]} ({_gammas(r['policies'][label])}): mean "
                         f"{np.mean(sp):.2f}x, worst {min(sp):.2f}x, max/min "
                         f"{max(sp) / min(sp):.2f}")
        out.append(f"one gamma against a gamma per task (base drafter), {how}: "
                   + "; ".join(cells))
    return out


def _best(r: dict, w: str) -> str:
    """The arm's best policy for the base-worst task ``w``, out of sample and in sample."""
    held = r.get("policies_heldout")
    parts = []
    if held:
        lab = max(held, key=lambda x: held[x][w])
        wb, mb = _spread(r, lab, w)
        parts.append(f"with the policy best on the held-out passes ({lab}): {w} {wb:.2f}x, "
                     f"max/min {mb:.2f}")
    else:
        parts.append("out-of-sample choice not recorded in this run")
    lab = max(r["policies"], key=lambda x: _spread(r, x, w)[0])
    wb, mb = _spread(r, lab, w)
    parts.append(f"in-sample oracle best ({lab}): {w} {wb:.2f}x, max/min {mb:.2f}")
    return "; ".join(parts)


def policy_table(s: dict, tasks: list[str]) -> Table:
    """Predicted speed-ups per drafting policy: the base drafter and each arm's largest
    budget (replayed on the teacher-forced test passes with the measured c and v)."""
    rows = []
    for r in [s["base"]] + [a["budgets"][-1] for a in s["arms"].values()]:
        for label, per in r["policies"].items():
            sp = [per[t]["speedup"] for t in tasks]
            rows.append([f"{r['arm']} {r['budget']:.2f}", label, *(f"{x:.2f}" for x in sp),
                         f"{max(sp) / min(sp):.2f}"])
    c = s["costs"]
    return Table(["drafter", "policy", *tasks, "max/min"], rows,
                 f"Predicted speed-ups; measured c = {c['c']:.3f}, v(k) = 1 + "
                 f"{c['verify_slope']:.3f} (k - 1). Gamma is chosen per task or once for all "
                 "tasks either on the test passes themselves (in-sample oracle: an upper bound) "
                 "or on the held-out train prompts' passes (out of sample); every number is "
                 "scored on the test passes.", ["l", "l"] + ["r"] * (len(tasks) + 1))


def policy_answer(s: dict) -> tuple[str, list[str]]:
    """Drafting policy alone, fine-tuning alone and both, on the base-worst task's predicted
    speed-up and the max/min speed-up ratio across tasks."""
    base = s["base"]
    fixed = next(iter(base["policies"]))
    w = base["base_worst_task"]
    w0, m0 = _spread(base, fixed, w)
    head = (f"Drafting policy against fine-tuning (predicted speed-ups; {w} is the base-worst "
            f"task; base drafter with {fixed}: {w} {w0:.2f}x, max/min {m0:.2f}):")
    out = []
    for label in base["policies"]:
        if label != fixed:
            wt, mm = _spread(base, label, w)
            out.append(f"policy alone, {label}: {w} {wt:.2f}x, max/min {mm:.2f} (no training)")
    out += _one_vs_per(base)
    for name, a in s["arms"].items():
        r = a["budgets"][-1]
        wt, mm = _spread(r, fixed, w)
        out.append(f"fine-tuning, {name} ({tokens_seen(r)}), with {fixed}: {w} "
                   f"{wt:.2f}x, max/min {mm:.2f}; combined {_best(r, w)}")
    return head, out


# ----------------------------------------------------------------------------- tables


def alpha_table(s: dict, tasks: list[str]) -> Table:
    rows = []
    for r in [s["base"]] + [r for a in s["arms"].values() for r in a["budgets"]]:
        rows.append([r["arm"], f"{r['budget']:.2f}", tokens_cell(r),
                     *(f"{r['tasks'][t]['alpha']:.3f}" for t in tasks),
                     f"{r['mean_alpha']['value']:.3f}", f"{r['worst_alpha']['value']:.3f}",
                     f"{r['ce_spread_topk']['value']:.4f}"])
    return Table(["arm", "budget", TOKENS_HEAD, *tasks, "mean", "worst", "CE spread (top-k)"],
                 rows,
                 "Sampled alpha, upper bound (top-k + residual bucket; test split, "
                 "teacher-forced on the target's greedy answers)",
                 ["l"] + ["r"] * (len(tasks) + 5))


def change_table(s: dict) -> Table:
    rows = [[r["arm"], f"{r['budget']:.2f}", _fmt(r["d_base_worst_alpha"]),
             _fmt(r["d_mean_alpha"]), _fmt(r["d_worst_alpha"]),
             _fmt(r["ce_spread_topk_change"], 2)]
            for a in s["arms"].values() for r in a["budgets"]]
    return Table(["arm", "budget", "base-worst task d-alpha", "mean d-alpha",
                  "worst-alpha change", "CE spread (top-k) change"], rows,
                 "Sampled alpha (upper bound): paired changes against the base drafter (95% "
                 "bootstrap CI)", ["l"] + ["r"] * 5)


def timed_tables(t: dict) -> list[Block]:
    """Measured speed-ups per task and drafter; each arm against the base drafter (paired);
    predicted against measured."""
    names = list(t["drafters"])
    tasks = list(t["drafters"][names[0]]["tasks"])
    rows = [[task, *(_x(t["drafters"][n]["tasks"].get(task, {}).get("speedup"))
                     for n in names)] for task in tasks]
    rows.append(["all prompts", *(_x(t["drafters"][n]["overall"]) for n in names)])
    rows.append(["max/min", *(_f(t["drafters"][n]["max_min"]) for n in names)])
    out: list[Block] = [Table(["task", *names], rows,
                              f"Measured speed-up (SD ÷ AR tokens/s, 95% bootstrap CI over "
                              f"prompts), {t['policy']}, greedy, {t['max_new_tokens']} new "
                              f"tokens, up to {t['n_per_task']} test prompts per task; every "
                              "drafter against the same AR runs",
                              ["l"] + ["r"] * len(names))]
    arms = [n for n in names if n != "base"]
    if arms:
        rows = [[task, *(_x(t["drafters"][n]["tasks"].get(task, {}).get("vs_base"), 3)
                         for n in arms)] for task in tasks]
        out.append(Table(["task", *arms], rows,
                         "Each arm's speed-up ÷ the base drafter's, same prompts and AR runs "
                         "(paired 95% CI; above 1: faster than the base drafter)",
                         ["l"] + ["r"] * len(arms)))
    rows = []
    err = lambda p, m: f"{p / m - 1:+.0%}" if p is not None and m else "–"  # noqa: E731
    num = lambda p: f"{p:.2f}" if p is not None else "–"  # noqa: E731
    for n in names:
        for task, v in t["drafters"][n]["tasks"].items():
            m, p, q = v["speedup"]["mean"], v["predicted"], v.get("predicted_prefill")
            rows.append([n, task, _x(v["speedup"]), num(p), err(p, m), num(q), err(q, m)])
    out.append(Table(["drafter", "task", "measured", "predicted, steps only", "error",
                      "predicted, with prefills", "error"],
                     rows, f"Predicted (the policy replayed on the same prompts' "
                     f"teacher-forced passes, measured c = {t['costs']['c']:.3f}, "
                     f"v(k) = 1 + {t['costs']['verify_slope']:.3f}(k - 1)) against measured "
                     "speed-ups (wall time of the whole answer, prefill included). Steps only: "
                     "decoding steps priced in target steps; with prefills: plus each prompt's "
                     "target prefill (from its plain-decoding run, in that run's decode steps, "
                     "engine overhead included) and the drafter's (c times it); error: "
                     "predicted ÷ measured − 1 (the replay's error against the engine)",
                     ["l", "l", "r", "r", "r", "r", "r"]))
    return out


# ----------------------------------------------------------------------------- document


def _notes(s: dict) -> list[str]:
    """The overfit check, the leak checks' drops (train prompts, training texts) and how the
    bootstrap resamples (groups, seeds)."""
    out = []
    if o := s.get("overfit"):
        out.append(f"Overfit check ({o['task']}, {o['n_sequences']} train sequences, "
                   f"{o['epochs']} epochs, lr {o['lr']:g}, {tokens_seen(o)}, "
                   f"{o['tokens_per_s']:.0f} tokens/s): greedy alpha on those sequences "
                   f"{o['greedy_before']:.3f} -> {o['greedy_after']:.3f} "
                   f"({o['greedy_after'] - o['greedy_before']:+.3f})" + _test_side(o) + ".")
        if st := o.get("at_study_settings"):
            out.append(f"The same task at the study's own settings ({st['epochs']} epochs, lr "
                       f"{st['lr']:g}): greedy alpha on the train sequences "
                       f"{st['greedy_before']:.3f} -> {st['greedy_after']:.3f}"
                       + _test_side(st) + ".")
    if (leak := s.get("leakage")) is not None:
        per = ", ".join(f"{t} {n}" for t, n in leak["per_task"].items())
        out.append(f"Leak check: {leak['n_dropped']} train-split prompt(s) dropped before "
                   f"training for sharing a text with a test prompt or reference"
                   + (f" ({per}; `leakage.json`)." if per else "."))
        if (tt := leak.get("training_texts")) is not None:
            per = ", ".join(f"{t} {n}" for t, n in tt["per_task"].items())
            out.append(f"Training texts as trained on, checked against the test prompts, "
                       f"references and the target's test answers: {tt['n_dropped']} of "
                       f"{tt['n_checked']} contained one and were dropped before training"
                       + (f" ({per})." if per else "."))
        else:
            out.append("Training texts: not checked against the test answers in this run.")
    else:
        out.append("Leak check: not recorded in this run (made before the check).")
    b = s.get("bootstrap") or {}
    seeds = b.get("seeds") or []
    out.append(f"Bootstrap: {b.get('replicates', '?')} replicates, "
               + (f"resampling split groups jointly across tasks ({b['shared_groups']} groups "
                  "span several tasks)" if b.get("grouped") else
                  "resampling prompts independently per task (no split groups recorded: "
                  "CIs across tasks that share sources are too narrow)")
               + (f"; training seeds {', '.join(map(str, seeds))} resampled first (the largest "
                  "budget; the budget curve and the timed drafters are the first seed's)."
                  if len(seeds) > 1 else "; one training seed: the CIs cover the prompts, not "
                  "the training's randomness."))
    return out


def _test_side(o: dict) -> str:
    """The overfit check's test alpha beside its train alpha (runs made before: nothing)."""
    if "test_greedy_before" not in o:
        return ""
    return (f"; on the task's {o['n_test']} test sequences {o['test_greedy_before']:.3f} -> "
            f"{o['test_greedy_after']:.3f} "
            f"({o['test_greedy_after'] - o['test_greedy_before']:+.3f})")


def methods_blocks(m: dict | None) -> list[Block]:
    """The method comparison (``methods.json``): per method and compared task held-out and test
    greedy alpha and their paired change against the base drafter, the gain over the configured
    method, training speed; which method the arms trained with and why."""
    if not m:
        return []
    tasks = m["tasks"]
    head = ["method", *[f"{t} {split}" for t in tasks for split in ("held-out", "test")],
            "held-out vs configured", "tokens/s"]
    rows = [["base", *[f"{m['base'][t][split]:.3f}" for t in tasks
                       for split in ("heldout", "test")], "", ""]]
    for r in m["methods"]:
        cells = []
        for t in tasks:
            for split in ("heldout", "test"):
                d = r["tasks"][t][f"d_{split}_vs_base"]
                cells.append(f"{r['tasks'][t][split]:.3f} ({d['value']:+.3f} "
                             f"[{d['lo']:+.3f}, {d['hi']:+.3f}])")
        dc = r["d_heldout_vs_configured"]
        rate = np.mean([r["tasks"][t]["tokens_per_s"] for t in tasks])
        rows.append([r["name"], *cells, f"{dc['value']:+.3f} [{dc['lo']:+.3f}, {dc['hi']:+.3f}]",
                     f"{rate:.0f}"])
    return [Heading("Method comparison"),
            Para(f"Before the arms, on {', '.join(tasks)} (the base drafter's worst and best "
                 f"task on the held-out prompts, or as configured), one copy per task and "
                 f"method, {m['tokens_per_task']:,} training tokens each (paired: the same "
                 "prompts). Greedy alpha on the held-out prompts' target answers (the "
                 "selection) and on the test sequences, with the paired change against the "
                 "base drafter (95% CI over prompts). Method names: top layers trained, "
                 "learning rate, training text."),
            Table(head, rows),
            Para(f"Configured: {m['configured']}. The arms trained with **{m['chosen']}**"
                 + ("" if m.get("select", True) else " (selection off)")
                 + f": {m['why']}.")]


def _where(s: dict, timed: dict | None) -> str:
    """The CPU the costs were measured on (the training and evaluation's machine; runs before
    it was recorded: the timed stage's)."""
    cpu = (s.get("costs") or {}).get("cpu") or next(
        (m["cpu"] for m in (timed or {}).get("machines") or []), None)
    return f"Measured on {cpu}. " if cpu else ""


def _machines(ms: list[dict]) -> str:
    """Where the timed runs ran (``timed/machines.jsonl``)."""
    says = [f"{m['cpu']}, {m['cpu_count']} cores, torch {m['torch']} with {m['torch_threads']} "
            f"threads" + (f", GPU {m['cuda']}" if m.get("cuda") else "") for m in ms]
    if not says:
        return "Timed on: not recorded."
    if len(says) == 1:
        return f"Timed on: {says[0]}."
    return ("Timed in sessions on different machines (speed-ups of different drafters may not "
            "compare): " + "; ".join(says) + ".")


def _slopes(s: dict) -> list[str]:
    """Per arm: the slopes of greedy alpha (primary), of sampled alpha (upper bound) and of
    the CE spread on the top-k buckets per 10k training tokens, and whether the worst task's
    greedy alpha reaches the mean."""
    out = []
    for name, a in s["arms"].items():
        d = a["dose_response"]
        proj = d["projected_tokens_worst_reaches_mean"]
        proj_s = (f"~{proj:,.0f} training tokens (extrapolation)" if proj is not None
                  else f"not projected: beyond {d['projection_limit_tokens']:,.0f} tokens, "
                       "twice the largest measured budget" if d.get("projection_beyond_limit")
                  else "never at the measured slopes (the worst task does not rise, or does "
                       "not gain on the mean)")
        w = d["worst_task"]
        g = ""
        if "greedy_per_10k" in d:  # summaries from before greedy alpha have neither
            ps = d.get("projection_slopes") or {"worst": d["greedy_per_10k"][w],
                                                "mean": d["mean_greedy_per_10k"],
                                                "source": "budget rows"}
            g = (f"{ps['worst']:+.4f} greedy alpha/10k (mean over tasks {ps['mean']:+.4f}/10k; "
                 f"{ps['source']}), ")
        out.append(f"**{name}**: worst task {w} {g}{d['alpha_per_10k'][w]:+.4f} sampled alpha "
                   f"(upper bound)/10k (mean {d['mean_alpha_per_10k']:+.4f}/10k), CE spread "
                   f"(top-k) {d['ce_spread_topk_per_10k']:+.5f}/10k; worst reaches the mean "
                   f"(greedy alpha): {proj_s}.")
    return out


def _timed_routing(t: dict) -> list[str]:
    """How each per-task drafter was routed while timed (``timed.json``)."""
    out = []
    for name, d in t["drafters"].items():
        if d.get("routing") == "classifier":
            wrong = sum(n for task, c in d.get("routes", {}).items()
                        for copy, n in c.items() if copy != task)
            out.append(f"{name} is timed as deployed without labels: each prompt drafted by "
                       f"the copy the task router picks ({wrong} timed prompt(s) routed away "
                       "from their own task's copy; oracle routing is compared on the "
                       "teacher-forced passes, under Task routing).")
        elif d.get("routing") == "oracle":
            out.append(f"{name} is timed with oracle routing: each prompt drafted by its own "
                       "task's copy (its task label).")
    return out


def _timed_retrained(t: dict) -> list[str]:
    """Each timed drafter trained again from the start (its checkpoints not kept) whose
    re-evaluation is not equal to its records (``timed.json`` ``retrained``,
    :mod:`specfair.study.retrained`); an equal one goes unsaid."""
    out = []
    for name, r in (t.get("retrained") or {}).items():
        if r["status"] == "equal":
            continue
        d = r["max_abs_diff"]
        fmt = lambda x: "n/a" if x is None else f"{x:.2g}"  # noqa: E731
        cpus = {(c.get("cpu"), c.get("original_cpu")) for c in r["copies"].values()}
        where = "; ".join(f"first trained on {o or 'an unrecorded CPU'}, again on {c}"
                          for c, o in sorted(cpus, key=str))
        out.append(f"The timed drafter {name} was trained again from the start in a later "
                   f"session (its checkpoint was not kept) and "
                   + {"differs": "differs from", "unchecked": "was not compared with"}.get(
                       r["status"], "is within tolerance of (not equal to)")
                   + " its records "
                   f"(max |Δ alpha| {fmt(d.get('alpha'))}, |Δ greedy alpha| "
                   f"{fmt(d.get('greedy'))}, |Δ CE| {fmt(d.get('ce'))} on the first test "
                   f"prompts of each task; {where}); {r['sd_runs_before']} of its "
                   f"{r['sd_runs']} timed runs were made before with the first training.")
    return out


def report_blocks(s: dict, timed: dict | None, name: str,
                  routing: dict | None = None) -> list[Block]:
    tasks = list(s["config"]["tasks"])
    cfg = s["config"]
    dose = (f"; a data dose of {cfg['dose_arm']} at {', '.join(map(str, fr))} of the distinct "
            "training prompts" if (fr := cfg.get("prompt_fractions")) else
            f"; a data dose of {cfg['dose_arm']} at {', '.join(map(str, nt))} supervised tokens "
            "per dose task (the arms trained on the largest)" if (nt := cfg.get("dose_tokens"))
            else "")
    blocks: list[Block] = [
        Heading(f"specfair experiment {name}: drafter fine-tuning against the per-task gap", 1),
        Para(f"{cfg['target']} with drafter {cfg['drafter']}; tasks {', '.join(tasks)}; arms "
             f"{', '.join(cfg['arms'])} at budgets {', '.join(map(str, cfg['budgets']))} of "
             f"the training tokens (top {cfg['top_layers']} layers, {cfg['loss']}, lr "
             f"{cfg['lr']:g}), training seeds {', '.join(map(str, cfg.get('seeds', [0])))} "
             f"(the further ones at the largest budget){dose}. {_where(s, timed)}Built from "
             "the stored records alone (`summary.json`, `timed.json`).", kind="note"),
        Heading("Answer"), *dose_answer_blocks(s, timed),  # a dose run's first paragraph
        Bullets(answer(s) + same_data_answer(s)
                                   + (timed_answer(timed) if timed else [])
                                   + deployed_answer(timed)
                                   + ([f"Task routing: {routing_answer(routing)[0]}"]
                                      if routing else []))]
    head, items = policy_answer(s)
    blocks += [Para(head), Bullets(items)]
    blocks += primary_blocks(s)
    blocks += methods_blocks(s.get("methods"))
    blocks += [
        Heading("Dose-response"),
        Figure(DOSE_FIGURE, dose_figure(s),
               "Greedy alpha per task against training tokens (bars: the paired 95% CI of the "
               "change against the base drafter); mean greedy alpha and mean sampled alpha "
               "(upper bound) with their CIs; the CE spread on the top-k buckets and U (Sandler "
               "et al.) where recorded."),
        Para("Least-squares slopes per 10k training tokens (the base drafter at 0 tokens "
             "included):"), Bullets(_slopes(s))]
    blocks += [t for a_name, a in s["arms"].items()
               if (t := curve_table(a["dose_response"].get("greedy_curve"),
                                    f"{a_name}: greedy alpha per 10k training tokens"))]
    if (d := s.get("data_dose")) and d.get("unit") == "supervised_tokens":
        blocks += token_dose_blocks(s, Figure(
            DATA_DOSE_FIGURE, data_dose_figure(s),
            "Each dose task's paired change in greedy alpha against the base drafter (95% CI "
            "bars) against its supervised tokens (log scale) and its distinct training "
            "prompts; the other tasks (dashed, collateral) against the dose tasks' mean."))
    elif d:
        blocks += data_dose_blocks(s, Figure(
            DATA_DOSE_FIGURE, data_dose_figure(s),
            "Each task's paired change in greedy alpha against the base drafter (95% CI bars) "
            "against its distinct training prompts and its supervised tokens."))
    blocks += power_blocks(s) + power_check_blocks(s) + matched_arms_blocks(s)
    blocks += training_blocks(s)
    blocks += same_data_blocks(s, tasks)  # fine-tuning against an index of the same text
    blocks += [Heading("Sampled alpha per task (secondary)"), alpha_table(s, tasks),
               change_table(s)]
    if routing:
        blocks += routing_blocks(routing, tasks)
    blocks.append(Heading("Measured speed-ups (timed)"))
    if timed and timed["drafters"]:
        blocks.append(Para(" ".join([_machines(timed.get("machines") or []),
                                     *_timed_routing(timed), *_timed_retrained(timed)]),
                           kind="note"))
        blocks.append(Figure(SPEEDUP_FIGURE, speedup_figure(timed),
                             "Measured speed-up per task and drafter (bars: 95% bootstrap CI "
                             "over prompts; dashed: no speed-up) and the predicted speed-up of "
                             "the same policy (dots)."))
        blocks += timed_tables(timed)
        blocks += deployed_blocks(timed)  # under each of timed_policies, HF assisted
    else:
        blocks.append(Para("Nothing timed in this run (n_bench = 0, or the timed stage has "
                           "not run yet).", kind="note"))
    blocks += [Heading("Drafting policy against fine-tuning (predicted)"), policy_table(s, tasks),
               Heading("Setup"), Bullets(_notes(s))]
    return blocks


def write_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` (figures under ``figures/``) and ``report.html`` into ``run_dir``
    from its ``summary.json``, ``timed.json`` and ``routing.json``; return their paths."""
    run_dir = Path(run_dir)
    path = run_dir / "summary.json"
    if not path.is_file():
        raise SpecfairError(f"{run_dir}: no summary.json (not an experiment run directory, or "
                            "its training has not finished)")
    s = read_json(path)
    timed, routing = (read_json(run_dir / f) if (run_dir / f).is_file() else None
                      for f in ("timed.json", "routing.json"))
    blocks = report_blocks(s, timed, s["config"].get("name", run_dir.name), routing)
    figures = real_dir(run_dir / FIGURES)  # no write through a symlink (specfair.atomic)
    for stale in (SPEEDUP_FIGURE, DATA_DOSE_FIGURE, ANSWER_FIGURE):  # none left from before
        (figures / stale).unlink(missing_ok=True)
    for b in blocks:
        if isinstance(b, Figure):
            write_bytes(figures / b.name, b.png)
    md, html = run_dir / "report.md", run_dir / "report.html"
    write_text(md, to_markdown(blocks, FIGURES))
    write_text(html, to_html(blocks, f"specfair experiment {run_dir.resolve().name}"))
    return md, html
