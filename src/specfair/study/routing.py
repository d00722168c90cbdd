"""The experiment's routing stage (runs when ``per-task`` is among the arms, after the seeds and
before the summary): what routing the per-task drafter by a task classifier, as it is deployed
on prompts without a label, costs against oracle routing (each prompt to its own task's copy).

1. the task router (:mod:`specfair.drafters.task_classifier`: logistic regression on the base
   drafter's mean-pooled prompt hidden states), fitted on the run's train prompts and their
   tasks: ``routing/task_router.{json,safetensors}`` (the timed stage copies it into
   ``drafters/per-task``, which then routes an unlabelled prompt by it); evaluated on the test
   prompts: ``routing/router_eval.json`` (accuracy per task, confusion: the format of
   ``specfair router train``) and ``routing/routes.json`` (per test prompt the task predicted,
   its probability and the route: the copy that drafts it, None for the base drafter when the
   probability is below the router's threshold);
2. the copy × task matrix: each per-task copy at the largest budget (first seed: the copies
   the per-task arm is timed with) and the base drafter, teacher-forced on every task's test
   sequences from the cached signals (no generation): ``routing/eval.jsonl``, the records of
   ``eval.jsonl`` with ``copy`` (a task, or ``base``) in place of the arm; a copy whose
   records are all there is not evaluated again, one with some missing appends those;
3. ``routing.json`` (:func:`summarize_routing`, from those files alone).
"""

from __future__ import annotations

import functools
from collections import Counter
from pathlib import Path

import numpy as np

from specfair.drafters.task_classifier import (
    EVAL_FILE,
    evaluate,
    fit_router,
    has_classifier,
    load_classifier,
    prompt_features,
)
from specfair.measure.io import read_json, read_jsonl, write_json
from specfair.measure.progress import say
from specfair.measure.replay import pass_of
from specfair.study.config import StudyConfig
from specfair.study.records import Records
from specfair.study.summary import paired_changes

ROUTING = "routing"  # the stage's directory
ROUTING_FILE = "routing.json"
ROUTES, EVALS = "routes.json", "eval.jsonl"
BASE = "base"  # the base drafter's rows (a prompt routed to no copy)
TOLERANCE = 0.005  # issue 19: routed alpha within this of oracle routing
METRICS = ("greedy", "alpha")


_say = functools.partial(say, "routing")


def stage_routing(run) -> Path | None:
    """Fit and evaluate the task router, evaluate every copy on every task, write
    ``routing.json``; returns the router's directory (None without a ``per-task`` arm or with
    fewer than two tasks: nothing to route)."""
    cfg, folder = run.cfg, run.dir / ROUTING
    if "per-task" not in cfg.arms or len(cfg.tasks) < 2:
        return None
    folder.mkdir(exist_ok=True)
    if has_classifier(folder):
        clf = load_classifier(folder)
    else:
        _say(f"task router: fitting on {len(run.prompts.train)} train prompts")
        clf = fit_router(run.drafter, run.tok, run.prompts.train)
        (folder / ROUTES).unlink(missing_ok=True)  # routes of another router are stale
        clf.save(folder)
    if not (folder / ROUTES).is_file():
        _route(run, clf, folder)
    _matrix(run, folder / EVALS)
    summarize_routing(run.dir, cfg)
    return folder


def _route(run, clf, folder: Path) -> None:
    """Route every test prompt: ``router_eval.json``, then ``routes.json``."""
    test, copies = run.prompts.test, list(run.cfg.tasks)
    x = prompt_features(run.drafter, run.tok, test, clf.layer, clf.max_tokens)
    result = evaluate(clf, x, [p.task for p in test], copies) | {"train": clf.train}
    write_json(folder / EVAL_FILE, result)
    p, k = clf.predict_proba(x).max(1)
    write_json(folder / ROUTES, [
        {"id": q.id, "task": q.task, "predicted": clf.tasks[j], "p": pr,
         "route": r if r in copies else None}
        for q, pr, j, r in zip(test, p.tolist(), k.tolist(), clf.route(x), strict=True)])
    _say(f"task router: test accuracy {result['accuracy']:.3f}, routed to the right copy "
         f"{result['routing_accuracy']:.3f} ({result['n']} prompts)")


def _matrix(run, path: Path) -> None:
    """Each copy (and the base drafter) on every test sequence, a copy at a time: the
    records of ``path`` missing (per copy and prompt, :mod:`specfair.study.records`)."""
    recs = Records(path, key=lambda r: (r["copy"], r["id"]))
    for copy in (BASE, *run.cfg.tasks):
        if not recs.lacks(run.test, copy=copy):
            continue
        top = run.fresh_top() if copy == BASE else run.top_at_largest(f"per-task/{copy}")
        recs.append(run.eval_records(top, run.test, exact=False, copy=copy))  # greedy, alpha
        _say(f"copy {copy}: evaluated on every task's {len(run.test)} test sequences")


def summarize_routing(run_dir: Path, cfg: StudyConfig) -> Path:
    """``routing.json`` from ``routing/``: the router's evaluation (``router_eval.json``) and
    where each task's test prompts were routed (``routes``: ``{task: {copy | "base": n}}``);
    ``matrix``: ``{metric: {copy | "base": {task: mean}}}`` (the diagonal is oracle routing);
    per metric (greedy, alpha) and the predicted speed-up, ``oracle`` and ``routed`` (each
    prompt's record from the copy its route picked) per task and their task mean, and
    ``change`` (routed − oracle, paired CI: :func:`specfair.study.summary.paired_changes`);
    ``wrong_routes``: per (task, copy) route taken to another copy or the base, the prompts
    and their mean change against their own copy; ``within``: whether each metric's mean
    change lies within ``tolerance``, point and CI."""
    folder, tasks = run_dir / ROUTING, list(cfg.tasks)
    routes = {r["id"]: r["route"] or BASE for r in read_json(folder / ROUTES)}
    recs: dict[str, dict[str, dict[str, dict]]] = {}  # copy -> task -> id -> record
    for r in read_jsonl(folder / EVALS):
        recs.setdefault(r["copy"], {}).setdefault(r["task"], {})[r["id"]] = r
    oracle = {t: {i: r for i, r in recs[t][t].items() if i in routes} for t in tasks}
    routed = {t: {i: recs[routes[i]][t][i] for i in oracle[t]} for t in tasks}
    changes = paired_changes(oracle, routed, tasks, cfg, read_json(run_dir / "costs.json"),
                             METRICS)
    mean = lambda rs, m: float(np.mean([r[m] for r in rs]))  # noqa: E731
    pick = lambda k: {m: v[k] for m, v in changes.items()}  # noqa: E731
    d = pick("change")
    out = {**read_json(folder / EVAL_FILE),
           "routes": {t: dict(Counter(routes[i] for i in oracle[t])) for t in tasks},
           "matrix": {m: {c: {t: mean(recs[c][t].values(), m) for t in tasks if t in recs[c]}
                          for c in (*tasks, BASE) if c in recs} for m in METRICS},
           "oracle": pick("base"), "routed": pick("arm"), "change": d,
           "wrong_routes": _wrong_routes(recs, routes, oracle, tasks),
           "tolerance": TOLERANCE,
           "within": {m: {"value": abs(d[m]["mean"]["value"]) <= TOLERANCE,
                          "ci": max(-d[m]["mean"]["lo"], d[m]["mean"]["hi"]) <= TOLERANCE}
                      for m in METRICS}}
    path = run_dir / ROUTING_FILE
    write_json(path, out)
    return path


def _wrong_routes(recs: dict, routes: dict, oracle: dict, tasks: list[str]) -> list[dict]:
    """Per (task, copy) route to another copy or the base drafter: its prompts and, per
    metric, their mean change against their own task's copy (``d_<metric>``)."""
    wrong: dict[tuple[str, str], list[str]] = {}
    for t in tasks:
        for i in oracle[t]:
            if routes[i] != t:
                wrong.setdefault((t, routes[i]), []).append(i)
    return [{"task": t, "copy": c, "n": len(ids)}
            | {f"d_{m}": float(np.mean([recs[c][t][i][m] - recs[t][t][i][m] for i in ids]))
               for m in METRICS}
            for (t, c), ids in sorted(wrong.items())]


def routed_passes(run_dir: Path, sd: list[dict]) -> dict[str, dict[str, tuple]]:
    """``{task: {id: pass}}`` for timed SD records of the per-task drafter routed by its task
    router: each prompt's teacher-forced pass (``routing/eval.jsonl``) by the copy its record's
    ``route`` names (null: the base drafter), the passes a prediction of that timing replays."""
    recs = {(r["copy"], r["id"]): r for r in read_jsonl(run_dir / ROUTING / EVALS)}
    out: dict[str, dict[str, tuple]] = {}
    for r in sd:
        if (rec := recs.get((r.get("route") or BASE, r["id"]))) is not None:
            out.setdefault(r["task"], {})[r["id"]] = pass_of(rec)
    return out
