"""The study's fine-tuned drafters on llama.cpp, per task, and each task's break-even acceptance
on that engine (issue 19).

    python benchmarks/llamacpp_per_task.py RUN_DIR --out OUT [--outtype q8_0] [--threads N]
        [--arms uniform per-task] [--tasks chat zh] [--n-per-task N]

RUN_DIR is a run of ``specfair experiment`` whose timed stage exported its drafters
(``study_config.json``, ``test_responses.jsonl``, ``drafters/<arm>/``). The prompts are the
ones that stage timed (:func:`specfair.study.timed.timed_prompts`: ``n_bench`` per task of the
run's test prompts; ``--n-per-task N`` takes the first N of them), checked against the run's
``test_responses.jsonl`` (same ids, same prompt token ids); greedy, the run's ``gamma`` and
``test_response_tokens`` new tokens.

1. Export (``OUT/gguf/``, :func:`specfair.backends.gguf_export.export_gguf`): the base drafter
   (the run's ``drafter``) and each arm's drafter for each task (``per-task``: that task's copy;
   other arms: their one drafter); a file already there is reused (delete it to re-export;
   ``OUT/run.txt`` names the run, another run is refused). 29-39 s a drafter on 2 cores.
   ``--outtype`` q8_0 by default, not the target's Q4_K_M: the exporter cannot write k-quants
   (``gguf`` has no k-quant quantizer, and the installer builds ``llama-server`` only, no
   ``llama-quantize``), and the fine-tuning moves the top layers' weights a little (lr 2e-5):
   q8_0 rounds ~1/256 of a block's largest weight, q4_0 ~1/16, enough to blur the difference
   being measured. q8_0 makes the drafter dearer than a 4-bit one; the cost ratio and the
   break-even below are measured with the drafters as run (``--outtype q4_0`` to see a 4-bit one).
2. Runs, task by task, prompt by prompt (``llama-server`` on loopback, one slot, ``--threads``):
   the target alone (AR) and SD with the base drafter (``OUT/base/bench.jsonl``), SD with each
   arm's drafter for the task (``OUT/<arm>/bench.jsonl``, with the base file's AR records: the
   pairing of the timed stage), then the base drafter alone (``OUT/drafter_alone.jsonl``: its
   speed). Every file resumes per prompt; ``OUT/machines.jsonl`` says which CPU and build timed
   each session.
3. Summary (``OUT/llamacpp_per_task.json`` and ``.md``): per task AR tokens/s; per drafter SD
   tokens/s, the speed-up (mean SD tok/s / mean AR tok/s) with its bootstrap CI, the paired
   ratio to the base drafter's (:mod:`specfair.measure.bench_summary`), llama.cpp's acceptance
   (``draft_n_accepted / draft_n``), the per-position acceptance (accepted / (accepted +
   rejections)) and τ; and the engine's costs and break-even α (:func:`engine_costs`).

The cost model is the one of :mod:`specfair.measure.replay` (:func:`step_cost`: a step drafting
k tokens costs ``k c + 1 + s k`` target decode steps). Measured in the same run, from llama.cpp's
generation time (``predicted_ms``: the decode steps after the first token, which comes with the
prompt; the draft model reads the prompt with the target, in ``prompt_ms``):
``c`` = the drafter's decode step / the target's (drafter alone vs target alone, same prompts);
``s`` = what the SD runs' generation time leaves per drafted token once their steps (tokens -
1 - accepted) and their drafter forwards (c per draft) are paid: verification beyond one token
and the engine's per-draft work. The break-even α
(:func:`specfair.measure.replay.break_even_alpha`) is the per-position acceptance at which SD's
decoding is as fast as plain decoding with γ drafts a step at these costs; the measured
speed-ups also pay the prompt (the drafter's too).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from specfair.backends.gguf_export import OUTTYPES, export_gguf
from specfair.backends.llamacpp import LlamaCppBackend
from specfair.drafters.routing import is_routed_export
from specfair.errors import SpecfairError
from specfair.measure.bench import (
    BENCH_FILE,
    BENCH_SUMMARY_FILE,
    load_bench_records,
    run_bench,
    run_prompt,
)
from specfair.measure.bench_summary import compare_bench, summarize_bench
from specfair.measure.io import append_jsonl, read_json, read_jsonl, write_json
from specfair.measure.replay import break_even_alpha
from specfair.measure.responses import read_responses
from specfair.measure.stats import bootstrap_ratio_of_ratios
from specfair.models.hardware import machine
from specfair.models.load import load_tokenizer, resolve_source
from specfair.rundir import check_settings, run_settings
from specfair.study.config import StudyConfig
from specfair.study.data import test_prompts
from specfair.study.timed import BASE, DRAFTERS, share_ar, timed_prompts
from specfair.tasks import encode_prompt
from specfair.tasks.study import load_study_suite

ALONE = "drafter_alone.jsonl"
MACHINES = "machines.jsonl"
OUT_JSON = "llamacpp_per_task.json"


def _say(msg: str) -> None:
    print(f"[llamacpp {time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ------------------------------------------------------------------ prompts and drafters
def run_prompts(run: Path, cfg: StudyConfig, tokenizer, n: int | None, tasks: Sequence[str]):
    """The timed stage's prompts of ``run`` (``n`` per task, of ``tasks``), each checked
    against the run's test responses: the same prompt token ids."""
    prompts = [p for p in timed_prompts(cfg, test_prompts(cfg, load_study_suite(
        seed=cfg.seed, tasks=cfg.tasks)), n) if p.task in tasks]  # fmt: skip
    resp = read_responses(run / "test_responses.jsonl")
    for p in prompts:
        r = resp.get((p.id, 0))
        if r is None or list(r["prompt_ids"]) != encode_prompt(tokenizer, p):
            raise SpecfairError(f"{run}: prompt {p.id} is not the run's test prompt (the suite's "
                                "data or the tokenizer changed since the run)")
    if not prompts:
        raise SpecfairError("no prompts: check --tasks and --n-per-task")
    return prompts


def export_all(run: Path, cfg: StudyConfig, arms: Sequence[str], tasks: Sequence[str],
               out: Path, outtype: str) -> dict[str, Path | dict[str, Path]]:
    """The GGUF of the base drafter and of each arm (a per-task export: ``{task: GGUF}``),
    written to ``out/gguf/`` unless there (see the module doc)."""
    src = {BASE: Path(resolve_source(cfg.drafter).path)} | {
        a: run / DRAFTERS / a for a in arms}
    ggufs: dict[str, Path | dict[str, Path]] = {}
    for name, path in src.items():
        routed = is_routed_export(path)
        for task in tasks if routed else [None]:
            stem = f"{name}-{task}" if routed else name
            f = out / "gguf" / f"{stem}-{outtype}.gguf"
            if not f.is_file():
                t0 = time.perf_counter()
                export_gguf(path, f, outtype=outtype, task=task, name=f"{cfg.name} {stem}")
                _say(f"exported {f.name} ({time.perf_counter() - t0:.0f} s)")
            if routed:
                ggufs.setdefault(name, {})[task] = f
            else:
                ggufs[name] = f
    return ggufs


# ------------------------------------------------------------------ runs
def _label(name: str) -> str:
    return name if name == BASE else f"{DRAFTERS}/{name}"


def run_all(prompts, cfg: StudyConfig, ggufs: dict[str, Path | dict[str, Path]], out: Path,
            settings: dict, *, target: str, **kw) -> None:
    """Every prompt, task by task: AR and SD with every drafter, then the base drafter alone
    (``target``: a known model or GGUF; ``kw``: more :class:`LlamaCppBackend` options;
    ``settings``: added to every record's)."""
    files = {name: out / name / BENCH_FILE for name in ggufs}
    alone_path = out / ALONE

    def done(path: Path) -> set[tuple[str, str]]:
        return {(r["id"], r["mode"]) for r in load_bench_records(path)}

    def todo(name: str, p) -> bool:
        return not {(p.id, "ar"), (p.id, "sd")} <= done(files[name])

    left = [p for p in prompts if any(todo(n, p) for n in files)
            or (p.id, "ar") not in done(alone_path)]
    if not left:
        return
    kw |= dict(gamma=cfg.gamma, tokenizer=cfg.target, log_dir=str(out / "logs"))
    gen = dict(gamma=cfg.gamma, max_new_tokens=cfg.test_response_tokens, seed=cfg.seed)
    warm: set = set()  # the drafters (per task, for a per-task export) warmed up
    with contextlib.ExitStack() as stack:
        base = stack.enter_context(LlamaCppBackend(target, str(ggufs[BASE]), **kw))
        alone = stack.enter_context(LlamaCppBackend(str(ggufs[BASE]), None, **kw))
        append_jsonl(out / MACHINES, machine() | {"engine": base.info(), "time": time.time()})
        shared = {BASE: base} | {
            n: stack.enter_context(LlamaCppBackend(
                target, str(g), ar_server=base.servers["ar"], **kw))
            for n, g in ggufs.items() if n != BASE and isinstance(g, Path)}  # fmt: skip
        _say(f"{len(left)} prompts to run: AR, SD with {', '.join(ggufs)}, the drafter alone")
        for task in dict.fromkeys(p.task for p in left):
            with contextlib.ExitStack() as per_task:
                engines = {n: shared[n] if n in shared else per_task.enter_context(
                    LlamaCppBackend(target, str(g[task]), ar_server=base.servers["ar"], **kw))
                    for n, g in ggufs.items()}  # fmt: skip
                for p in (p for p in left if p.task == task):
                    for name, be in engines.items():
                        if name != BASE:
                            share_ar(files[BASE], files[name], _label(name))
                        key = name if name in shared else (name, task)
                        if todo(name, p):
                            extra = settings | ({} if name in shared else {"routing": "oracle"})
                            run_bench(None, [p], files[name].parent, backend=be,
                                      drafter_label=_label(name), extra_settings=extra,
                                      warmup=key not in warm, progress=False, **gen)
                            warm.add(key)
                    if (p.id, "ar") not in done(alone_path):
                        _run_alone(alone, p, alone_path, settings, gen, warm="alone" not in warm)
                        warm.add("alone")
                    _say(f"{p.id} done")


def _run_alone(be: LlamaCppBackend, p, path: Path, settings: dict, gen: dict, warm: bool):
    """One plain run of the drafter alone (its decode speed), as a bench record."""
    label = Path(be.target_label).name
    block = run_settings(model=label, mode="drafter alone", backend=be.name,
                         max_new_tokens=gen["max_new_tokens"], seed=gen["seed"], **settings)
    check_settings(path, load_bench_records(path, repair=True), block)
    if warm:
        run_prompt("ar", None, None, be.tokenizer, p, backend=be, **(gen | {"max_new_tokens": 8}))
    rec = run_prompt("ar", None, None, be.tokenizer, p, backend=be, **gen)
    append_jsonl(path, {"id": p.id, "task": p.task, "mode": "ar", "model": label,
                        "settings": block, **rec, "time": time.time()})


# ------------------------------------------------------------------ summary
def _gen_steps(recs: Sequence[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Per record: llama.cpp's generation seconds and the decode steps they cover (the
    tokens after each turn's first, which comes with the prompt)."""
    secs = np.array([r["wall_s"] - r["prefill_s"] for r in recs], dtype=float)
    steps = np.array([r["new_tokens"] - len(r["turn_lengths"]) for r in recs], dtype=float)
    return secs, steps


def engine_costs(ar: Sequence[dict], alone: Sequence[dict], sd: Sequence[dict], gamma: int,
                 boot: dict) -> dict:
    """The engine's costs from the same prompts' runs (see the module doc): ``ar`` the target
    alone, ``alone`` the drafter alone, ``sd`` SD runs of any drafters."""
    t_s, t_n = _gen_steps(ar)
    d_s, d_n = _gen_steps(alone)
    if not (t_n.sum() > 0 and d_n.sum() > 0):
        return {"c": None, "verify_slope": None, "break_even_alpha": None}
    t_step = t_s.sum() / t_n.sum()
    c = bootstrap_ratio_of_ratios(d_s, d_n, t_s, t_n, **boot)
    s_s, s_n = _gen_steps(sd)
    drafted = sum(r["drafted"] for r in sd)
    steps = s_n.sum() - sum(r["accepted"] for r in sd)  # every step: its accepted drafts + 1
    slope = ((s_s.sum() / t_step - steps - c["mean"] * drafted) / drafted) if drafted else None
    return {"target_step_ms": 1e3 * t_step, "drafter_step_ms": 1e3 * d_s.sum() / d_n.sum(),
            "c": c, "verify_slope": slope,
            "verify_cost": None if slope is None else 1 + slope * gamma,
            "break_even_alpha": None if slope is None else break_even_alpha(
                gamma, c["mean"], slope)}  # fmt: skip


def _drafter_block(b: dict | None, vs_base: dict | None) -> dict | None:
    if b is None:
        return None
    return {"n": b["n"], "sd_tps": b["sd_tps"], "speedup": b["speedup"], "vs_base": vs_base,
            "alpha": b["alpha"], "alpha_per_position": b["alpha_tested"], "tau": b["tau"],
            "sd_matches_ar": b["sd_matches_ar"]}


def summarize(out: Path, names: Sequence[str], gamma: int, boot: dict) -> dict:
    """Per task and overall (see the module doc), from the records in ``out``."""
    files = {n: out / n / BENCH_FILE for n in names}
    sums = {n: summarize_bench(f, **boot) for n, f in files.items()}
    for n, s in sums.items():
        write_json(files[n].with_name(BENCH_SUMMARY_FILE), s)
    vs = {n: compare_bench(files[BASE], f, **boot) for n, f in files.items() if n != BASE}
    ar = {r["id"]: r for r in load_bench_records(files[BASE]) if r["mode"] == "ar"}
    alone = {r["id"]: r for r in load_bench_records(out / ALONE)}
    sd = [r for f in files.values() for r in load_bench_records(f) if r["mode"] == "sd"]

    def block(ids: set[str], b: dict[str, dict | None], vs_t: dict[str, dict | None]) -> dict:
        costs = engine_costs([ar[i] for i in ids], [alone[i] for i in ids],
                             [r for r in sd if r["id"] in ids], gamma, boot)
        return {"n": len(ids), "ar_tps": (b.get(BASE) or {}).get("ar_tps"), **costs,
                "drafters": {n: _drafter_block(b.get(n), vs_t.get(n)) for n in names}}

    tasks = {}
    for t in dict.fromkeys(r["task"] for r in ar.values()):
        ids = {i for i, r in ar.items() if r["task"] == t and i in alone}
        tasks[t] = block(ids, {n: s["tasks"].get(t) for n, s in sums.items()},
                         {n: v.get(t, {}).get("ratio") for n, v in vs.items()})
    overall = block({i for i in ar if i in alone}, {n: s["overall"] for n, s in sums.items()},
                    {})
    return {"tasks": tasks, "overall": overall}


def _f(x, nd: int = 2) -> str:
    return "–" if x is None or x != x else f"{x:.{nd}f}"


def _ci(c: dict | None, nd: int = 2) -> str:
    return "–" if not c else f"{_f(c['mean'], nd)} [{_f(c['lo'], nd)}, {_f(c['hi'], nd)}]"


def table(doc: dict) -> str:
    """The markdown table of :func:`summarize`'s result (with the run's settings in ``doc``)."""
    m = doc["machines"][-1] if doc.get("machines") else {}
    lines = [f"llama.cpp per task: {doc['run']}, γ = {doc['gamma']}, greedy, "
             f"{doc['max_new_tokens']} new tokens, drafters {doc['outtype']}, target "
             f"{doc['target']}; CPU {m.get('cpu', '?')}, {doc.get('threads')} threads, "
             f"{(m.get('engine') or {}).get('engine', '?')}", "",
             "| task | n | AR tok/s | c | v(γ) | break-even α | drafter | SD tok/s | speed-up "
             "[95% CI] | vs base [95% CI] | α (llama.cpp) | α per position | τ |",
             "|" + " --- |" * 13]  # fmt: skip
    for t, b in [*doc["tasks"].items(), ("**overall**", doc["overall"])]:
        head = [t, str(b["n"]), _f(b["ar_tps"], 1), _ci(b["c"], 3), _f(b.get("verify_cost")),
                _f(b["break_even_alpha"])]
        for k, (name, d) in enumerate(b["drafters"].items()):
            if d is None:
                continue
            row = (head if k == 0 else [""] * len(head)) + [
                name, _f(d["sd_tps"], 1), _ci(d["speedup"]), _ci(d["vs_base"]),
                _f(d["alpha"]["mean"]), _f(d["alpha_per_position"]["mean"]),
                _f(d["tau"]["mean"])]  # fmt: skip
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ main
def check_one_run(out: Path, run: Path) -> None:
    """``out`` holds one run's drafters and records: the first use writes ``out/run.txt``, a
    later one with another run is refused."""
    stamp = out / "run.txt"
    if stamp.is_file() and stamp.read_text().strip() != str(run):
        raise SpecfairError(f"{out} holds the drafters of {stamp.read_text().strip()}, not "
                            f"{run}: use another --out")
    out.mkdir(parents=True, exist_ok=True)
    stamp.write_text(f"{run}\n")


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="a run directory of specfair experiment")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--arms", nargs="*", help="arms of RUN/drafters (default: all exported)")
    ap.add_argument("--tasks", nargs="*", help="tasks (default: the run's)")
    ap.add_argument("--n-per-task", type=int, help="prompts per task (default: n_bench)")
    ap.add_argument("--outtype", default="q8_0", choices=OUTTYPES)
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--target-gguf", help="the target's GGUF (default: the cached one)")
    ap.add_argument("--llama-server", help="the llama-server binary (default: the cached build)")
    args = ap.parse_args(argv)
    try:
        run, out = args.run.resolve(), args.out
        check_one_run(out, run)
        cfg = StudyConfig.from_dict(read_json(run / "study_config.json"),
                                    str(run / "study_config.json"))
        exported = [a for a in cfg.arms if (run / DRAFTERS / a).is_dir()]
        arms = exported if args.arms is None else args.arms
        if missing := [a for a in arms if a not in exported]:
            raise SpecfairError(f"{run / DRAFTERS}: no exported drafter for {missing}")
        tasks = args.tasks or cfg.tasks
        prompts = run_prompts(run, cfg, load_tokenizer(cfg.target), args.n_per_task, tasks)
        tasks = list(dict.fromkeys(p.task for p in prompts))
        ggufs = export_all(run, cfg, arms, tasks, out, args.outtype)
        target = args.target_gguf or cfg.target
        run_all(prompts, cfg, ggufs, out, {"study": cfg.name, "split": "test",
                                           "outtype": args.outtype, "threads": args.threads},
                target=target, threads=args.threads, binary=args.llama_server)
        boot = {"n_resamples": cfg.bootstrap, "seed": cfg.seed}
        doc = {"run": str(run), "study": cfg.name, "gamma": cfg.gamma,
               "max_new_tokens": cfg.test_response_tokens, "outtype": args.outtype,
               "target": target, "threads": args.threads,
               "ggufs": {n: str(g) if isinstance(g, Path) else {t: str(f) for t, f in g.items()}
                         for n, g in ggufs.items()},
               "machines": read_jsonl(out / MACHINES),
               **summarize(out, list(ggufs), cfg.gamma, boot)}  # fmt: skip
    except SpecfairError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    write_json(out / OUT_JSON, doc)
    md = table(doc)
    (out / OUT_JSON).with_suffix(".md").write_text(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
