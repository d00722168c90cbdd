"""The experiment's timed stage: every arm's drafter at the largest budget, exported as Hugging
Face directories and benchmarked with the engine against the base drafter. The drafter timed is
the first training seed's (``arms/<arm>``): the one the budget curve, the policies and the
prediction beside each measurement are of; further seeds (``arms/seed<N>``) and the data dose
(``arms/dose``) are evaluated, not timed.

1. export (``drafters/<arm>/``): a plain HF directory (``uniform``, ``disparity``), or for
   ``per-task`` the per-task layout (``router.json``, ``base/``, ``tasks/<task>/`` holding the
   task's top layers), both by :func:`specfair.drafters.export.export_drafter`, with the task
   router of the routing stage (:mod:`specfair.study.routing`) copied in; each one is a
   ``specfair bench --drafter`` argument as it is (``specfair generate`` routes an unlabelled
   prompt by the router). Exported from the copy's checkpoint; where that was not kept, only
   while a timed run is missing, from the copy trained again (:mod:`specfair.study.retrained`:
   ``timed.json`` ``retrained`` says how close it came to its records).
2. bench (``timed/<drafter>/bench.jsonl``, :func:`specfair.measure.bench.run_bench`): the
   ``n_bench`` test prompts per task (a seeded subset of the study's test prompts), AR and SD,
   greedy, fixed ``gamma``, ``test_response_tokens`` new tokens (the length of the answers the
   prediction replays), prompt by prompt: AR, then SD with the base drafter and with each arm's
   (every drafter is loaded at once, in the config's ``dtype``; each export holds the base
   drafter's modules where it did not train them, so the frozen layers are held once for all
   drafters, packed once on the fp32 path; the run's own drafter is released meanwhile).
   ``timed/base`` holds the AR runs and the base drafter's SD
   runs; each arm's file holds the same AR records (same target, same prompts: the pairing) and
   its own SD runs. Resumable per prompt, as every bench; ``timed/machines.jsonl`` says on
   which machine each session timed. The per-task drafter is timed as it is deployed: each
   prompt drafted by the copy the task router picks (``routing: classifier`` in the settings,
   the copy in each SD record's ``route``; the router runs on the prompt before the timed
   generation, as every bench's routing). Oracle routing is not timed as well: that would
   time the arm twice, and the routing stage compares the two on the same teacher-forced
   passes (``routing.json``: alpha and predicted speed-up, routed against oracle). A per-task
   export without a router (one task) and a run timed before the router existed keep oracle
   routing (a bench file refuses records of other settings). With ``timed_policies`` every
   drafter is also timed under each other listed policy (``adaptive+hybrid``, say), and with
   ``timed_hf`` HF assisted generation with its defaults, in the same loop against the same AR
   runs (:mod:`specfair.study.timed_policies`: their files and ``timed.json`` blocks).
3. ``timed.json`` (:func:`summarize_timed`): per drafter and task the measured speed-up with its
   bootstrap CI, the paired ratio to the base drafter's speed-up
   (:func:`specfair.measure.bench_summary.compare_bench`), and the speed-up predicted for the
   same policy by replaying the same prompts' teacher-forced passes (``eval.jsonl``) with the
   measured costs (:mod:`specfair.measure.replay`); for a per-task drafter, the routing its
   timing used and where the router sent each task's timed prompts.
"""

from __future__ import annotations

import functools
import time
from collections import Counter
from pathlib import Path

from specfair.backends.hf_assisted import HFAssistedBackend
from specfair.distill.cached import with_top
from specfair.drafters.export import export_drafter
from specfair.drafters.load import is_export, load_drafter
from specfair.drafters.router import TaskRoutedDrafter
from specfair.drafters.routing import (
    has_task_router,
    is_routed_export,
    load_routed_drafter,
    pack_drafters,
)
from specfair.drafters.task_classifier import EVAL_FILE, has_classifier, load_classifier
from specfair.measure.bench import BENCH_FILE, MODES, load_bench_records, model_dtype, run_bench
from specfair.measure.io import append_jsonl, read_json, read_jsonl, write_json
from specfair.measure.progress import progress_bar, say
from specfair.measure.replay import Policy, pass_of, replay_all
from specfair.models.hardware import machine
from specfair.models.load import load_model
from specfair.models.memory import trim
from specfair.study.arms import weights_kept
from specfair.study.config import StudyConfig
from specfair.study.data import sample_each
from specfair.study.index_timed import index_bench_options, index_labels, index_prediction
from specfair.study.retrained import for_arm
from specfair.study.routing import routed_passes
from specfair.study.timed_policies import (
    HF_LABEL,
    bench_path,
    hf_path,
    measured,
    summarize_policies,
    timed_policies,
    unit,
)
from specfair.tasks.prompt import Prompt
from specfair.tasks.suite import sample_per_task

BASE = "base"
TIMED = "timed"
DRAFTERS = "drafters"
TIMED_FILE = "timed.json"
MACHINES = "machines.jsonl"  # one line for each session that timed something


_say = functools.partial(say, "timed")


def export_arms(run, router: Path | None = None) -> dict[str, Path]:
    """``{arm: export directory}``; an arm already exported is kept as it is. One not exported
    is exported from its checkpoint where that is kept, else only where the timed stage still
    has a run to make (:func:`timed_owes`): then the copy is trained again from the start
    (``Run.top_at_largest``: a run directory continued from its records elsewhere keeps no
    exports and no checkpoints); a run timed to the end needs no weights and trains nothing.
    ``router``: the directory of the per-task drafter's task router
    (:mod:`specfair.study.routing`), copied into the per-task export where it has none."""
    cfg = run.cfg
    out = {arm: run.dir / DRAFTERS / arm for arm in cfg.arms_timed}
    owes = None  # asked once, where an export is missing and its weights are not kept
    for arm, path in out.items():
        if not is_export(path):
            if not weights_kept(run, arm):
                if owes is None:
                    owes = timed_owes(run, list(out))
                if not owes:
                    _say(f"{path} not rebuilt: its checkpoint was not kept and no stage left "
                         "needs its weights")
                    continue
            meta = {"study": cfg.name, "arm": arm, "budget": max(cfg.budgets),
                    "loss": cfg.loss, "method": "topn", "top_layers": cfg.top_layers,
                    "seed": cfg.seeds[0]}
            if arm == "per-task":
                models = {t: with_top(run.drafter, run.top_at_largest(f"per-task/{t}"))
                          for t in cfg.tasks}
                export_drafter(TaskRoutedDrafter(None, base=run.drafter, models=models),
                               run.tok, path, tasks=list(cfg.tasks), meta=meta)
            else:
                export_drafter(with_top(run.drafter, run.top_at_largest(arm)), run.tok, path,
                               meta=meta)
            _say(f"exported {arm} -> {path}")
        if arm == "per-task" and router is not None and not has_classifier(path):
            load_classifier(router).save(path)  # checked on the way
            write_json(path / EVAL_FILE, read_json(router / EVAL_FILE))
            _say(f"task router {router} -> {path}")
    return out


def timed_prompts(cfg: StudyConfig, test: list[Prompt], n: int | None = None) -> list[Prompt]:
    """The prompts this stage times: ``n`` (default each task's ``n_bench``,
    ``n_bench_per_task``) of each task's ``test`` prompts (the run's,
    :func:`specfair.study.data.test_prompts`), seeded: a smaller ``n`` picks a subset of a
    larger one's."""
    if n is not None:
        return sample_per_task(test, n, cfg.seed)
    return sample_each(test, {t: cfg.per_task("n_bench", t) for t in cfg.tasks}, cfg.seed)


def share_ar(base: Path, out: Path, label: str, over: dict | None = None) -> None:
    """Start ``out`` from the base run's AR records (relabelled: ``over``, the settings of
    ``out``'s SD runs that differ, default its drafter ``label``): the same target on the same
    prompts, so every drafter and policy is timed against the same AR runs."""
    over = over if over is not None else {"drafter": label}
    have = {r["id"] for r in load_bench_records(out, repair=True) if r["mode"] == "ar"}
    for r in load_bench_records(base):
        if r["mode"] == "ar" and r["id"] not in have:
            append_jsonl(out, r | over | {"settings": r["settings"] | over})


def _routing(path: Path, bench: Path) -> str:
    """How a per-task export is timed: as the SD records already in ``bench`` were (a bench
    file refuses other settings), else by its task router where it has one."""
    for r in load_bench_records(bench):
        if r["mode"] == "sd":
            return r["settings"].get("routing", "oracle")
    return "classifier" if has_task_router(path) else "oracle"


def _load(path: Path, base, tokenizer, cfg: StudyConfig, bench: Path):
    """An export as the engine's drafter, in the base drafter's dtype and device, holding the
    base drafter's modules wherever it did not train them (its frozen layers, held once for
    every drafter); per-task copies routed by :func:`_routing`, which the settings record."""
    dt, device = model_dtype(base), str(base.device)
    if is_routed_export(path):
        routing = _routing(path, bench)
        return load_routed_drafter(path, cfg.target, dtype=dt, device=device, routing=routing,
                                   tokenizer=tokenizer, frozen_from=base), {"routing": routing}
    return load_drafter(path, dtype=dt, device=device, frozen_from=base), {}


def _plan(run, arms: list[str]) -> tuple[list[Prompt], dict[str, Path], list, dict]:
    """``(prompts, {unit: bench file}, the other policies, the index variants)`` of the timed
    stage: what :func:`run_timed` times (the base drafter and ``arms``' exports)."""
    cfg = run.cfg
    prompts = timed_prompts(cfg, run.prompts.test)
    variants = index_labels(run.dir, cfg)  # time_index: the index variants (study.index_timed)
    # the other policies (study.timed_policies): adaptive prices the run's verify curve
    costs = run.dir / "costs.json"
    slope = read_json(costs).get("verify_slope") if costs.is_file() else None
    others = timed_policies(cfg, slope)[1:]
    names = (BASE, *arms)
    files = {name: run.dir / TIMED / name / BENCH_FILE for name in (*names, *variants)}
    files |= {unit(n, pol): bench_path(run.dir, n, pol) for pol in others for n in names}
    if cfg.timed_hf:
        files[HF_LABEL] = hf_path(run.dir)
    return prompts, files, others, variants


def _todo(path: Path, p: Prompt) -> bool:
    """Whether bench file ``path`` lacks prompt ``p``'s AR or SD run."""
    done = {(r["id"], r["mode"]) for r in load_bench_records(path)}
    return not {(p.id, m) for m in MODES} <= done


def _owes(files: dict[str, Path], prompts: list[Prompt]) -> bool:
    """Whether any of ``files`` lacks a run of ``prompts`` (each file read once)."""
    for path in files.values():
        done = {(r["id"], r["mode"]) for r in load_bench_records(path)}
        if any(not {(p.id, m) for m in MODES} <= done for p in prompts):
            return True
    return False


def timed_owes(run, arms: list[str]) -> bool:
    """Whether the timed stage still has a run to make (a prompt's AR or SD run missing from
    any of its files): only then does it need the drafters' weights."""
    prompts, files, _, _ = _plan(run, arms)
    return _owes(files, prompts)


def run_timed(run, exports: dict[str, Path]) -> Path | None:
    """Benchmark the base drafter and every export on the timed prompts, prompt by prompt (AR,
    then SD with each drafter under each of ``timed_policies``, then HF assisted generation
    with ``timed_hf``: a drift of the machine's speed hits every drafter alike); returns the
    path of ``timed.json`` (None when no prompt is timed: ``n_bench`` 0)."""
    cfg = run.cfg
    prompts, files, others, variants = _plan(run, list(exports))
    if not prompts:
        return None
    names = (BASE, *exports)
    if not _owes(files, prompts):
        return summarize_timed(run.dir, cfg)  # every run is there: no model to load
    # the target in the kernels it is timed with; the drafters unpacked until they share the
    # base drafter's frozen layers, then packed as the target is (each shared module once)
    target = load_model(cfg.target, cfg.dtype, "auto", kernels="auto")
    trim()
    base = load_model(cfg.drafter, model_dtype(target), str(target.device))
    append_jsonl(run.dir / TIMED / MACHINES, machine() | {"time": time.time()})
    drafters = {BASE: (base, cfg.drafter, {})}
    for arm, path in exports.items():
        drafter, extra = _load(path, base, run.tok, cfg, files[arm])
        drafters[arm] = (drafter, f"{DRAFTERS}/{arm}", extra)
    if getattr(target, "specfair_packed", False):
        pack_drafters([d for d, _, _ in drafters.values()])
    trim()  # the unpacked weights and each export's frozen copies, freed: give them back
    opts = index_bench_options(run, variants)  # each variant's proposer and index
    for label, arm in variants.items():  # the index alone; the arm's drafter with it
        drafter, _, extra = drafters[arm or BASE]
        drafters[label] = (drafter, f"{DRAFTERS}/{arm}" if arm else cfg.drafter, extra)
    # what each file times: (drafter, its label, settings, run_bench options, the settings its
    # AR records are relabelled with; None: its own AR runs)
    units = {name: (*drafters[name], opts.get(name, {}),
                    None if name == BASE or name in opts else {"drafter": drafters[name][1]})
             for name in drafters}
    for pol in others:
        for name in names:
            drafter, label, extra = drafters[name]
            over = {"drafter": label, **pol.policy.settings(), "proposer": pol.proposer}
            units[unit(name, pol)] = (drafter, label, extra, {"policy": pol.policy,
                                                              "proposer": pol.proposer}, over)
    if cfg.timed_hf:  # HF assisted generation's defaults, the base drafter as its assistant
        hf = HFAssistedBackend(target, base, run.tok, cfg.target, cfg.drafter)
        units[HF_LABEL] = (base, cfg.drafter, {"dtype": model_dtype(target)}, {"backend": hf},
                           {"drafter": cfg.drafter, **hf.drafting(), "backend": hf.name})
    kw = dict(gamma=cfg.gamma, max_new_tokens=cfg.test_response_tokens, seed=cfg.seed,
              target_label=cfg.target, progress=False)
    settings = {"study": cfg.name, "split": "test"}
    _say(f"{len(prompts)} prompts, each: AR, then SD with {', '.join(units)}")
    warm: set[str] = set()
    with progress_bar(len(prompts), "timed") as advance:
        for p in prompts:
            for name, (drafter, label, extra, options, over) in units.items():
                if over is not None:  # the base run's AR record, relabelled
                    share_ar(files[BASE], files[name], label, over)
                if _todo(files[name], p):
                    run_bench((target, drafter, run.tok), [p], files[name].parent,
                              drafter_label=label, extra_settings=settings | extra,
                              warmup=name not in warm, **kw, **options)
                    warm.add(name)
            advance(p.id)
    return summarize_timed(run.dir, cfg)


def _passes(evals: list[dict], arm: str, budget: float,
            seed: int) -> dict[str, dict[str, tuple]]:
    """``{task: {id: pass}}`` of one arm at one budget, trained with ``seed`` (the base
    drafter's records and records of runs before seeds were recorded: any)."""
    out: dict[str, dict[str, tuple]] = {}
    for r in evals:
        if r["arm"] == arm and r["budget"] == budget and r.get("seed", seed) == seed:
            out.setdefault(r["task"], {})[r["id"]] = pass_of(r)
    return out


def _prefill_steps(ar: list[dict]) -> dict[str, float]:
    """Per prompt, its plain-decoding run's prefill time in units of the same run's decode
    steps (engine overhead included): what a prediction adds for the prefills."""
    out = {}
    for r in ar:
        steps = r["new_tokens"] - 1
        if steps > 0 and r["wall_s"] > r["prefill_s"] > 0:
            out[r["id"]] = r["prefill_s"] / ((r["wall_s"] - r["prefill_s"]) / steps)
    return out


def summarize_timed(run_dir: Path, cfg: StudyConfig) -> Path:
    """``timed.json`` (and each drafter's ``bench_summary.json``) from the stored records."""
    costs = read_json(run_dir / "costs.json")
    evals = read_jsonl(run_dir / "eval.jsonl")
    policy, largest = Policy("fixed", cfg.gamma), max(cfg.budgets)
    boot = {"n_resamples": cfg.bootstrap, "seed": cfg.seed}
    base = run_dir / TIMED / BASE / BENCH_FILE
    drafters, retrained = {}, {}
    variants = index_labels(run_dir, cfg)
    for label in (BASE, *cfg.arms_timed, *variants):
        path = run_dir / TIMED / label / BENCH_FILE
        if not path.is_file():
            continue
        block, records = measured(path, None if label == BASE else base, boot)
        sd = [r for r in records if r["mode"] == "sd"]
        routing = next((r["settings"].get("routing") for r in sd), None)  # per-task drafters
        predict = None  # an index variant's prediction (study.index_timed)
        if label in variants:
            passes, predict = index_prediction(run_dir, cfg, variants[label], policy, costs)
        else:
            passes = (routed_passes(run_dir, sd) if routing == "classifier" else
                      _passes(evals, *((BASE, 0.0) if label == BASE else (label, largest)),
                              cfg.seeds[0]))
        prefill = _prefill_steps([r for r in records if r["mode"] == "ar"])
        tasks = {}
        for t, b in block["tasks"].items():
            ids = [r["id"] for r in sd if r["task"] == t and r["id"] in passes.get(t, {})]
            chosen, pre = [passes[t][i] for i in ids], [prefill.get(i) for i in ids]
            pred = pred_pre = None
            if ids and predict is not None:
                pred, pred_pre = predict(t, ids, pre)
            elif ids:
                pred = replay_all(chosen, policy, costs["c"], costs["verify_slope"])["speedup"]
            if ids and predict is None and None not in pre:
                pred_pre = replay_all(chosen, policy, costs["c"], costs["verify_slope"],
                                      pre)["speedup"]
            tasks[t] = {k: b[k] for k in ("n", "speedup", "alpha")} | {
                "predicted": pred, "predicted_prefill": pred_pre, "vs_base": b["vs_base"]}
        drafters[label] = block | {"tasks": tasks}
        if routing:
            drafters[label]["routing"] = routing
        if routing == "classifier":
            drafters[label]["routes"] = {t: dict(Counter(r.get("route") or BASE for r in sd
                                                         if r["task"] == t)) for t in tasks}
        if label in cfg.arms and (again := for_arm(run_dir, label, list(cfg.tasks))):
            # its copies trained again (checkpoints not kept): how close, and how many of its
            # SD runs were timed before with the first training's export
            retrained[label] = again | {"sd_runs": len(sd), "sd_runs_before": sum(
                r.get("time", 0.0) < again["first_time"] for r in sd)}
    out = run_dir / TIMED_FILE
    machines: list[dict] = []  # the distinct machines the sessions timed on
    for m in read_jsonl(run_dir / TIMED / MACHINES):
        if (m := {k: v for k, v in m.items() if k != "time"}) not in machines:
            machines.append(m)
    doc = {"policy": policy.label, "gamma": cfg.gamma, "budget": largest,
           "max_new_tokens": cfg.test_response_tokens,
           "n_per_task": max(cfg.per_task("n_bench", t) for t in cfg.tasks),
           "costs": costs, "machines": machines, "drafters": drafters}
    if retrained:  # a timed drafter trained again from the start (study.retrained)
        doc["retrained"] = retrained
    if cfg.timed_policies or cfg.timed_hf:  # the policies users deploy (study.timed_policies)
        doc["policies"], doc["hf_assisted"] = summarize_policies(
            run_dir, cfg, [BASE, *cfg.arms_timed], drafters, boot)
    write_json(out, doc)
    return out
