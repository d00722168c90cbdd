"""The report's "same data, two uses" section, from ``summary.json``'s ``same_data``
(:mod:`specfair.study.same_data` computes every number): per task the base drafter, the best
fine-tuned arm, the index of the arms' training text alone and the fine-tuned drafter with
it, predicted on the same teacher-forced passes; their paired changes; the same at each point
of the data dose. Nothing here computes a statistic."""

from __future__ import annotations

import math

from specfair.report.doc import Block, Bullets, Heading, Para, Table

NAMES = {"base": "base drafter", "fine-tuned": "fine-tuned", "index": "index alone",
         "fine-tuned+index": "fine-tuned + index", "base+index": "base drafter + index"}
TABLE = ("base", "fine-tuned", "index", "fine-tuned+index")  # the table's uses, in order


def _f(x, nd: int = 3) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{x:.{nd}f}"


def _x(ci: dict | None, nd: int = 2) -> str:
    if not ci or ci.get("value") is None:
        return "–"
    return f"{ci['value']:.{nd}f}x [{ci['lo']:.{nd}f}, {ci['hi']:.{nd}f}]"


def _d(ci: dict | None, nd: int = 3) -> str:
    if not ci or ci.get("value") is None:
        return "–"
    return f"{ci['value']:+.{nd}f} [{ci['lo']:+.{nd}f}, {ci['hi']:+.{nd}f}]"


def _use(name: str, sd: dict) -> str:
    ft = (sd.get("fine_tuned") or {}).get("arm")
    return f"{NAMES[name]} ({ft})" if ft and name.startswith("fine-tuned") else NAMES[name]


def _cells(name: str, r: dict) -> list[str]:
    """α, τ, the index's share of the steps and of them those drafted from the task's text
    (not the request's own tokens), the predicted speed-up."""
    idx = name.endswith("index")
    return [_f(r["alpha"]), _f(r["tau"], 2), _f(r["share"], 2) if idx else "–",
            _f(r["share_task_text"], 2) if idx else "–", _x(r["speedup"])]


def same_data_answer(s: dict) -> list[str]:
    """One line: the index alone and with the fine-tuned drafter against fine-tuning, over the
    task mean (paired CIs), and each one's worst task."""
    sd = s.get("same_data")
    if not sd:
        return []
    m, ch = sd["mean"], sd["changes"]
    line = (f"Same data, two uses (predicted, {sd['policy']}): the index of the arms' training "
            f"text alone {_x(m['index']['speedup'])} mean over tasks (worst "
            f"{m['index']['worst_speedup']['task']} "
            f"{_f(m['index']['worst_speedup']['value'], 2)}x)")
    if "fine-tuned" in m:
        line += (f", the fine-tuned drafter ({sd['fine_tuned']['arm']}) "
                 f"{_x(m['fine-tuned']['speedup'])}, both together "
                 f"{_x(m['fine-tuned+index']['speedup'])} (worst "
                 f"{m['fine-tuned+index']['worst_speedup']['task']} "
                 f"{_f(m['fine-tuned+index']['worst_speedup']['value'], 2)}x); index − "
                 f"fine-tuned {_d(ch['index - fine-tuned']['mean'])}, fine-tuned + index − "
                 f"fine-tuned {_d(ch['fine-tuned+index - fine-tuned']['mean'])} (paired 95% CI)")
    return [line + "."]


def same_data_blocks(s: dict, tasks: list[str]) -> list[Block]:
    sd = s.get("same_data")
    if not sd:
        return []
    c = sd["costs"]
    ft = sd.get("fine_tuned")
    blocks: list[Block] = [
        Heading("Same data, two uses: fine-tuning against an index of the same text"),
        Para("The training text the fine-tuning arms train on (each training sequence's "
             "response positions: the same supervised tokens), put to its other use: a "
             "SuffixDecoding index per task (`indexes/index/`, a `specfair bench --proposer "
             "suffix:DIR` argument), drafting from the task's text and the request's own "
             "tokens at no model cost. Every use is replayed on the same test answers' "
             f"teacher-forced passes under {sd['policy']} (index drafts size themselves), "
             f"priced with the measured costs (c = {c['c']:.3f} a drafter draft, none for an "
             f"index draft, verifying k drafts 1 + {c['verify_slope']:.3f} k); routing: "
             f"{sd['routing']}. Fine-tuned + index drafts from the index first, else by prompt "
             "lookup, else with the drafter (`suffix-hybrid`). α: drafts accepted / drafted; "
             "τ: drafts per drafting step; index share: steps the index drafts (from the task's "
             "text or the request's own tokens), and of all steps those drafted from the "
             "task's text. "
             + (f"The fine-tuned arm is {ft['arm']} (largest budget, first seed), the best "
                f"mean predicted speed-up on the {ft['chosen_on']}." if ft else
                "No fine-tuned arm has finished yet.")),
    ]
    rows = []
    for t in tasks:
        for name in TABLE:
            r = sd["tasks"].get(t, {}).get(name)
            if r:
                rows.append([t, _use(name, sd), *_cells(name, r)])
    for name in TABLE:
        r = sd["mean"].get(name)
        if r:
            rows.append(["**mean**", _use(name, sd), *_cells(name, r)])
    blocks.append(Table(["task", "use of the data", "α", "τ", "index share",
                         "from the task's text", "predicted speed-up [95% CI]"], rows,
                        "Same data, two uses (per task, predicted on the same passes)",
                        ["l", "l", "r", "r", "r", "r", "r"]))
    pairs = [k for k in ("index - fine-tuned", "fine-tuned+index - fine-tuned", "index - base")
             if k in sd["changes"]]
    if pairs:
        blocks.append(Table(
            ["task", *[k.replace(" - ", " − ") for k in pairs]],
            [[t, *[_d(sd["changes"][k][t]) for k in pairs]] for t in tasks]
            + [["**mean**", *[_d(sd["changes"][k]["mean"]) for k in pairs]]],
            "Paired changes in predicted speed-up (95% CI over prompt groups)"))
    blocks += _dose_blocks(sd, tasks)
    return blocks


def _dose_blocks(sd: dict, tasks: list[str]) -> list[Block]:
    if not sd.get("dose"):
        return []
    rows, notes = [], []
    for p in sd["dose"]:
        m = p["mean"]
        sup = [v["index"] for v in p["supervised_tokens"].values()]
        rows.append([str(p["point"]), f"{sum(sup) / max(1, len(sup)):.0f}",
                     _x(m.get("fine-tuned", {}).get("speedup")), _x(m["index"]["speedup"]),
                     _x(m.get("fine-tuned+index", {}).get("speedup")),
                     _d(p["changes"].get("index - fine-tuned", {}).get("mean"))])
        if p["same_supervised_tokens"] is False:
            notes.append(f"At dose {p['point']} the index and {p['fine_tuned']} hold different "
                         "supervised tokens for some task (see `same_data.json`).")
    return [Para("At each point of the data dose, the index of the same training texts the "
                 "dose arm trains on there (the same supervised tokens):"),
            Table(["dose point", "supervised tokens (mean per task)", "fine-tuned",
                   "index alone", "fine-tuned + index", "index − fine-tuned (mean)"], rows,
                  "Predicted speed-up, mean over tasks, at each data dose")] + (
        [Bullets(notes)] if notes else [])
