"""Same data, two uses (issue 30): per task, the training text the fine-tuning arms use, put
to each use, on the same test answers: the base drafter, the best fine-tuned arm, the index
of that text alone (SuffixDecoding, :mod:`specfair.study.index_arm`) and the fine-tuned
drafter with the index (``suffix-hybrid``: the index's draft first, else prompt lookup, else
the drafter; the base drafter with the index too), and the same at each point of the data
dose: ``same_data.json``, from the stored records alone.

Every variant is replayed (:func:`specfair.measure.replay.replay`) under the headline policy
(:data:`specfair.measure.replay.POLICIES` [0]: fixed γ) on the same teacher-forced passes:
the drafter's ``match`` from ``eval.jsonl`` and each position's suffix and prompt-lookup draft
from ``indexes/eval.jsonl``; exact for greedy decoding (the drafts are a function of the
context, which along the target's greedy answer is the engine's). Per task and variant:

* ``alpha``: drafts accepted / drafts made (greedy), ``tau``: drafts per drafting step (the
  mean draft length), ``share``: steps the index drafts (a suffix draft) / steps,
  ``share_task_text``: steps drafted from the task's text (not the request's own tokens) /
  steps, ``alpha_index`` / ``tau_index``: of the index's drafts alone, ``tokens_per_step``;
* ``speedup``: predicted, tokens / cost with the measured costs (``costs.json``: a drafter
  draft costs ``c``, an index or lookup draft nothing, verifying k drafts ``1 + slope k``),
  with a bootstrap CI over prompt groups (:func:`specfair.study.summary.group_draws`), and the
  paired changes of :data:`CHANGES` per task and over the task mean.

The fine-tuned arm is the one with the highest mean predicted speed-up over tasks on the
held-out prompts' passes (``policy_eval.jsonl``; on the test passes where none were kept),
at the largest budget, first seed: the drafter the timed stage times. Routing is oracle (each
prompt's own task's index and copy), as the arms' rows of ``summary.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specfair.measure.io import read_json, read_jsonl, write_json
from specfair.measure.replay import POLICIES, Replay, TextDrafts, pass_of, replay, replay_all
from specfair.study.config import StudyConfig
from specfair.study.dose import dose_name
from specfair.study.summary import complete, group_draws

INDEXES, EVALS, ARM = "indexes", "eval.jsonl", "index"  # the stage's directory, records, arm
SAME_DATA_FILE = "same_data.json"
POLICY = POLICIES[0]
BASE, FT, INDEX, FT_INDEX, BASE_INDEX = (
    "base", "fine-tuned", "index", "fine-tuned+index", "base+index")
PROPOSER = {BASE: "model", FT: "model", INDEX: "suffix", FT_INDEX: "suffix-hybrid",
            BASE_INDEX: "suffix-hybrid"}
CHANGES = ((INDEX, FT), (FT_INDEX, FT), (INDEX, BASE), (FT_INDEX, INDEX))


def _by_task(records: list[dict]) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for r in records:
        out.setdefault(r["task"], {})[r["id"]] = r
    return out


def _arm_records(evals: list[dict], arm: str, budget: float, seed: int) -> list[dict]:
    return [r for r in evals if r["arm"] == arm and r["budget"] == budget
            and r.get("seed", seed) == seed]


def replay_variant(proposer: str, passed: dict | None, drafted: dict | None, c: float,
                   v: float, policy=POLICY) -> Replay:
    """One prompt replayed with ``proposer`` under ``policy``: ``passed``, its drafter's record
    (``eval.jsonl``; None: no drafter), ``drafted``, its index record
    (``indexes/eval.jsonl``)."""
    pre = None
    if proposer != "model":
        pre = {"suffix": TextDrafts.of_record(drafted, "suffix"),
               "ngram": TextDrafts.of_record(drafted, "lookup")}
    if passed is not None:
        m, q = pass_of(passed)
    else:  # the index alone: no drafter (a pass of the answer's length)
        n = len(pre["suffix"].length)
        m, q = [False] * n, [0.0] * n
    return replay(m, q, policy, proposer=proposer, drafts=pre, c=c, verify_slope=v)


def _stats(rs: list[Replay]) -> dict:
    steps = sum(r.steps for r in rs)
    drafted, accepted = sum(r.drafted for r in rs), sum(r.accepted for r in rs)
    sizes = [(k, a, s) for r in rs for k, a, s in
             zip(r.draft_sizes, r.accepted_sizes, r.sources or ("model",) * r.steps,
                 strict=True)]  # fmt: skip
    drafting = sum(k > 0 for k, _, _ in sizes)
    own = [(k, a) for k, a, s in sizes if s == "suffix"]
    ratio = lambda x, y: x / y if y else None  # noqa: E731
    return {"alpha": ratio(accepted, drafted), "tau": ratio(drafted, drafting),
            "share": ratio(len(own), steps),
            "share_task_text": ratio(sum(t == "index" for r in rs for t in r.trees), steps),
            "alpha_index": ratio(sum(a for _, a in own), sum(k for k, _ in own)),
            "tau_index": ratio(sum(k for k, _ in own), len(own)),
            "tokens_per_step": ratio(sum(r.tokens for r in rs), steps), "steps": steps}


def _mean(xs: list) -> float | None:
    """The mean over tasks of a metric (None where a task has none: nothing drafted)."""
    have = [x for x in xs if x is not None]
    return float(np.mean(have)) if have else None


def _band(point: float, boot: np.ndarray, paired: bool = False) -> dict:
    lo, hi = np.quantile(boot, [0.025, 0.975])
    out = {"value": float(point), "lo": float(lo), "hi": float(hi)}
    return out | ({"claimed": bool(lo > 0 or hi < 0)} if paired else {})


def block(variants: dict[str, tuple[str, dict | None, dict | None]], base: dict,
          tasks: list[str], cfg: StudyConfig, costs: dict) -> dict:
    """``variants``: ``{name: (proposer, {task: {id: drafter record}} | None, {task: {id: index
    record}} | None)}``, replayed on the prompts every one of them and ``base`` (the base
    drafter's records) holds: per task and variant the metrics of the module docstring, the
    task mean of each, and the paired changes of :data:`CHANGES` among the variants given."""
    have = [x for _, p, d in variants.values() for x in (p, d) if x is not None]
    common = {t: {i: r for i, r in base.get(t, {}).items()
                  if all(i in x.get(t, {}) for x in have)} for t in tasks}
    ids, cols, w = group_draws(common, common, tasks, cfg.bootstrap, cfg.seed)
    c, v = costs["c"], costs["verify_slope"]
    out: dict = {"tasks": {t: {} for t in tasks}, "mean": {}, "changes": {},
                 "n_prompts": {t: len(ids[t]) for t in tasks}}
    points, boots = {}, {}
    for name, (proposer, passes, drafts) in variants.items():
        pk, bk = [], []
        for t in tasks:
            rs = [replay_variant(proposer, passes[t][i] if passes else None,
                                  drafts[t][i] if drafts else None, c, v)
                  for i in ids[t]]
            tok = np.array([r.tokens for r in rs], float)
            cost = np.array([r.cost(c, v) for r in rs], float)
            wt = w[:, cols[t]]
            pk.append(tok.sum() / cost.sum() if rs else float("nan"))
            bk.append(wt @ tok / np.maximum(wt @ cost, 1e-12))
            out["tasks"][t][name] = _stats(rs) | {"speedup": _band(pk[-1], bk[-1])}
        points[name], boots[name] = np.array(pk), np.stack(bk, 1)
        out["mean"][name] = {k: _mean([out["tasks"][t][name][k] for t in tasks])
                             for k in ("alpha", "tau", "share", "share_task_text",
                                       "tokens_per_step")} | {
            "speedup": _band(points[name].mean(), boots[name].mean(1)),
            "worst_speedup": {"task": tasks[int(np.argmin(points[name]))],
                              "value": float(points[name].min())}}
    for a, b in CHANGES:
        if a in points and b in points:
            d, db = points[a] - points[b], boots[a] - boots[b]
            out["changes"][f"{a} - {b}"] = {t: _band(d[k], db[:, k], True)
                                            for k, t in enumerate(tasks)} | {
                "mean": _band(d.mean(), db.mean(1), True)}
    return out


def _best_arm(evals: list[dict], held: list[dict], cfg: StudyConfig,
              costs: dict) -> dict | None:
    """The fine-tuned arm of the table (module docstring): ``{"arm", "chosen_on", "scores"}``
    (None when no arm has its test records at the largest budget yet)."""
    largest, seed, tasks = max(cfg.budgets), cfg.seeds[0], list(cfg.tasks)
    arms = [a for a in cfg.arms if _arm_records(evals, a, largest, seed)]
    if not arms:
        return None
    on_held = all(_arm_records(held, a, largest, seed) for a in arms)
    source = held if on_held else evals

    def score(arm: str) -> float:
        recs = _by_task(_arm_records(source, arm, largest, seed))
        return float(np.mean([replay_all([pass_of(r) for r in recs[t].values()], POLICY,
                                         costs["c"], costs["verify_slope"])["speedup"]
                              for t in tasks if recs.get(t)]))

    scores = {a: score(a) for a in arms}
    return {"arm": max(arms, key=lambda a: scores[a]), "budget": largest, "seed": seed,
            "chosen_on": "held-out passes" if on_held else "test passes (no held-out kept)",
            "scores": scores}


def _index_records(run_dir: Path, base_ids: set[str]) -> dict[str, dict]:
    """``{index name: {task: {id: record}}}`` of the indexes with a record for every test
    prompt (a stage stopped part-way is left out until it resumes)."""
    by: dict[str, list[dict]] = {}
    for r in read_jsonl(run_dir / INDEXES / EVALS):
        by.setdefault(r["index"], []).append(r)
    return {n: _by_task(rs) for n, rs in by.items() if {r["id"] for r in rs} >= base_ids}


def _sizes(recs: dict[str, dict]) -> dict[str, dict]:
    """Per task: the index's training texts and their tokens (the supervised tokens)."""
    return {t: {"sequences": next(iter(rs.values()))["index_sequences"],
                "tokens": next(iter(rs.values()))["index_tokens"]} for t, rs in recs.items()}


def same_data(run_dir: Path, cfg: StudyConfig) -> dict | None:
    """The numbers of ``same_data.json`` (None before the index's records are complete)."""
    evals = complete(read_jsonl(run_dir / "eval.jsonl"))
    held = complete(read_jsonl(run_dir / "policy_eval.jsonl"))
    costs = read_json(run_dir / "costs.json")
    tasks = list(cfg.tasks)
    base = _by_task([r for r in evals if r["arm"] == "base"])
    indexes = _index_records(run_dir, {i for rs in base.values() for i in rs})
    if ARM not in indexes:
        return None
    best = _best_arm(evals, held, cfg, costs)
    ft = (_by_task(_arm_records(evals, best["arm"], best["budget"], best["seed"]))
          if best else None)
    idx = indexes[ARM]
    variants = {BASE: ("model", base, None), INDEX: ("suffix", None, idx),
                BASE_INDEX: ("suffix-hybrid", base, idx)}
    if ft:
        variants |= {FT: ("model", ft, None), FT_INDEX: ("suffix-hybrid", ft, idx)}
    out = {"policy": POLICY.label, "costs": {"c": costs["c"],
                                             "verify_slope": costs["verify_slope"]},
           "routing": "oracle (each prompt's own task's index and copy)",
           "fine_tuned": best, "index": _sizes(idx),
           "variants": [n for n in (BASE, FT, INDEX, FT_INDEX, BASE_INDEX) if n in variants],
           **block(variants, base, tasks, cfg, costs), "dose": []}
    for p in cfg.dose_points:
        name = dose_name(ARM, p)
        if name not in indexes:
            continue
        arm = dose_name(cfg.dose_arm, p)
        recs = _arm_records(evals, arm, 1.0, cfg.seeds[0])
        dosed = _by_task(recs) if recs else None
        v = {INDEX: ("suffix", None, indexes[name])}
        if dosed:
            v = {FT: ("model", dosed, None)} | v | {FT_INDEX: ("suffix-hybrid", dosed,
                                                               indexes[name])}
        sup = {r["task"]: r.get("dose_supervised_tokens") for r in recs}
        sizes = _sizes(indexes[name])
        out["dose"].append({
            "point": p, "index": name, "fine_tuned": arm if dosed else None,
            "supervised_tokens": {t: {"index": sizes[t]["tokens"], "fine-tuned": sup.get(t)}
                                  for t in tasks if t in sizes},
            "same_supervised_tokens": (all(sizes[t]["tokens"] == sup.get(t) for t in sizes)
                                       if dosed else None),
            **block(v, base, tasks, cfg, costs)})
    return out


def summarize_same_data(run_dir: Path, cfg: StudyConfig) -> Path | None:
    """Write ``same_data.json`` (:func:`same_data`); None (and no file) before the index's
    records are complete."""
    res = same_data(run_dir, cfg)
    if res is None:
        return None
    path = run_dir / SAME_DATA_FILE
    write_json(path, res)
    return path
