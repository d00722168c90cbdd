"""CLI glue: load the pair and the suite, run, summarise, write JSON, print tables."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from specfair.backends import open_backend
from specfair.backends.llama_server import NGRAM_LOOKUP
from specfair.decoding.ngram import index_dir, parse_proposer, uses_drafter
from specfair.decoding.policy import POLICY_FILE, DraftingPolicy, parse_policy
from specfair.decoding.proposer import as_proposer, route_of
from specfair.defaults import DEFAULT_GAMMA
from specfair.drafters.index import load_index
from specfair.drafters.routing import (
    check_drafter_context,
    check_routing,
    has_task_router,
    load_routed_drafter,
)
from specfair.errors import SpecfairError
from specfair.measure.bench import BENCH_FILE, BENCH_SUMMARY_FILE, load_bench_records, run_bench
from specfair.measure.bench_summary import summarize_bench
from specfair.measure.estimate import (
    ESTIMATE_FILE,
    ESTIMATE_SUMMARY_FILE,
    measure_cost_ratio,
    run_estimate,
)
from specfair.measure.estimate_summary import (
    compare_estimate_to_bench,
    policy_from_summary,
    summarize_estimate,
)
from specfair.measure.io import read_json, read_jsonl, write_json
from specfair.measure.responses import RESPONSES_FILE
from specfair.measure.tables import print_bench_table, print_estimate_table
from specfair.models import load_pair
from specfair.models.load import Pair, load_model, load_tokenizer, resolve_device, resolve_dtype
from specfair.rundir import check_out_dir, check_out_files, check_settings, dir_lock, run_settings
from specfair.schema import SEED_LIMIT
from specfair.tasks import Suite, encode_prompt, load_suite, sample_per_task

SPLITS = ("train", "test", "all")


def check_run_args(*, split: str, n_per_task: int | None, gamma: int | None, max_new_tokens: int,
                   temperature: float, cost_ratio: float | None = None, seed: int = 0) -> None:
    """Refuse bad bench/estimate arguments before anything is loaded or written."""
    if not 0 <= seed < SEED_LIMIT:
        raise SpecfairError(f"--seed must be an integer in [0, 2**32), got {seed}")
    if split not in SPLITS:
        raise SpecfairError(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if n_per_task is not None and n_per_task < 1:
        raise SpecfairError(f"--n-per-task must be >= 1, got {n_per_task}")
    if gamma is not None and gamma < 1:
        raise SpecfairError(f"--gamma must be >= 1, got {gamma}")
    if max_new_tokens < 1:
        raise SpecfairError(f"--max-new-tokens must be >= 1, got {max_new_tokens}")
    if not math.isfinite(temperature) or temperature < 0:
        raise SpecfairError(f"--temperature must be a finite number >= 0, got {temperature}")
    if cost_ratio is not None and not (math.isfinite(cost_ratio) and cost_ratio > 0):
        raise SpecfairError(f"--cost-ratio must be a finite number > 0, got {cost_ratio}")


def select_prompts(
    suite, split: str = "test", n_per_task: int | None = None, seed: int = 0,
    data_root: str | Path | None = None,
):  # fmt: skip
    """The suite's prompts of ``split``, at most ``n_per_task`` per task (seeded choice), and
    the suite's settings (``suite``, ``data_hash``, ``split``) for the records.
    ``suite``: a spec for :func:`specfair.tasks.load_suite` or a loaded suite."""
    suite_obj = suite if isinstance(suite, Suite) else load_suite(suite, data_root=data_root)
    prompts = sample_per_task(suite_obj.prompts(split), n_per_task, seed=seed)
    if not prompts:
        raise SpecfairError(f"suite {suite_obj.name}: no prompts in split {split!r}")
    name = suite_obj.name if isinstance(suite, Suite) else str(suite)
    return prompts, {"suite": name, "data_hash": suite_obj.content_hash(), "split": split,
                     "tasks": suite_obj.tasks}


def _prepare(out_dir, target, drafter, max_new_tokens, dtype, device) -> tuple[Path, str]:
    """Checks that need no model: ``out_dir`` writable, ``max_new_tokens`` within both contexts;
    returns the output directory and the dtype the models will be loaded in."""
    out_dir = check_out_dir(out_dir)
    return out_dir, _prepare_dtype(target, drafter, max_new_tokens, dtype, device)


def _prepare_dtype(target, drafter, max_new_tokens, dtype, device) -> str:
    """Checks that need no model (both contexts, dtype, device); the dtype the models load in."""
    check_drafter_context(max_new_tokens, target, drafter)
    return str(resolve_dtype(dtype, resolve_device(device))).replace("torch.", "")


def _load_bench_pair(target, drafter, routing: str, dt: str, dtype, device, kernels):
    """The pair; a per-task export's drafter routed by ``routing``."""
    if routing == "none":
        return load_pair(target, drafter, dtype=dtype, device=device, kernels=kernels)
    t_model = load_model(target, dtype, device, kernels)
    tok = load_tokenizer(target)
    d = load_routed_drafter(drafter, target, dtype=dt, device=str(t_model.device),
                            packed=getattr(t_model, "specfair_packed", False), routing=routing,
                            tokenizer=tok)
    return Pair(t_model, d, tok, str(target), str(drafter))


def bench_command(
    target: str,
    drafter: str,
    suite: str | Path,
    out_dir: str | Path,
    split: str = "test",
    n_per_task: int | None = None,
    gamma: int | None = None,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    dtype: str = "auto",
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    kernels: str = "auto",
    data_root: str | Path | None = None,
    backend: str = "hf",
    backend_options: dict | None = None,
    routing: str = "oracle",
    policy: str | None = None,
    proposer: str = "model",
) -> dict:
    """Benchmark AR vs SD on the suite; write ``out_dir/bench.jsonl`` (resumable) and
    ``out_dir/bench_summary.json``; print the table; return the summary. Everything that can
    be checked without the models is checked before anything is written.

    ``drafter`` may be a per-task export (``router.json``, hf backend): ``routing`` "oracle"
    drafts each prompt with its task's copy, "classifier" with the copy the export's task
    router picks (:mod:`specfair.drafters.routing`); recorded in the settings as ``routing``.

    ``backend``: "hf" (specfair's transformers loop), "llamacpp" or "vllm" (see
    :mod:`specfair.backends`; ``backend_options`` go to its constructor).
    ``policy``/``gamma``: :func:`specfair.decoding.policy.parse_policy`; ``proposer``: "model",
    "ngram[:N]" (no drafter is loaded), "hybrid[:N]", "suffix[:DIR]" (no drafter) or
    "suffix-hybrid[:DIR]" (:func:`specfair.decoding.ngram.parse_proposer`; DIR: an index of
    ``specfair index build``, each prompt drafting from its task's index, routed as its
    drafter is; its files' sha256 are run settings)."""
    check_run_args(split=split, n_per_task=n_per_task, gamma=gamma,
                   max_new_tokens=max_new_tokens, temperature=temperature, seed=seed)
    pol = check_drafting(policy, gamma, proposer, backend)
    index = load_index(index_dir(proposer)) if index_dir(proposer) else None
    if pol.kind == "table" and pol.chosen_on and (pol.chosen_on == split
                                                  or "all" in (pol.chosen_on, split)):
        print(f"notice: the policy table's γs were chosen on split {pol.chosen_on}, which "
              f"overlaps the benchmarked split {split} (in-sample)", file=sys.stderr)
    drafter = drafter if uses_drafter(proposer) else None
    routing = check_routing(routing, drafter) if drafter is not None else "none"
    if routing != "none" and backend != "hf":
        raise SpecfairError(f"a per-task drafter export runs on the hf backend, not {backend}")
    out_dir, dt = _prepare(out_dir, target, drafter, max_new_tokens, dtype, device)
    prompts, suite_settings = select_prompts(suite, split, n_per_task, seed, data_root)
    pol.check_tasks(suite_settings.pop("tasks"))
    check_out_files(out_dir, (BENCH_FILE, BENCH_SUMMARY_FILE))
    extra = {**suite_settings, "dtype": dt if backend == "hf" else backend}
    if routing != "none":  # plain drafters: no key (their records stay comparable)
        extra["routing"] = routing
    if index is not None:  # a rebuilt index is another run
        extra["index_sha256"] = index.settings()["index_sha256"]
    d_label = "none" if drafter is None else str(drafter)
    expected = run_settings(target=str(target), drafter=d_label, **pol.settings(),
                            max_new_tokens=max_new_tokens, temperature=temperature, top_p=1.0,
                            top_k=0, seed=seed, proposer=proposer, backend=backend, **extra)
    labels = {"target_label": str(target), "drafter_label": d_label,
              "policy": pol, "proposer": proposer}
    engine_info = None
    with dir_lock(out_dir, "specfair bench"):
        path = out_dir / BENCH_FILE
        check_settings(path, load_bench_records(path), expected)  # before loading models
        if backend == "hf":
            pair = _load_bench_pair(target, drafter, routing, dt, dtype, device, kernels)
            if index is not None:
                index.check_tokenizer(pair.tokenizer)
            path = run_bench(
                pair, prompts, out_dir, max_new_tokens=max_new_tokens,
                temperature=temperature, seed=seed, progress=progress, extra_settings=extra,
                index=index, **labels,
            )
        else:
            engine = open_backend(backend, target, drafter, gamma=pol.gamma,
                                  proposer=proposer, **(backend_options or {}))
            try:  # the engine (servers) is always released, also on errors and Ctrl-C
                engine_info = engine.info()
                path = run_bench(
                    None, prompts, out_dir, max_new_tokens=max_new_tokens,
                    temperature=temperature, seed=seed, progress=progress, backend=engine,
                    extra_settings=extra, **labels,
                )
            finally:
                engine.close()
        summary = summarize_bench(path, seed=seed)
        summary["meta"].update({"suite": suite_settings["suite"], "split": split,
                                "n_per_task": n_per_task, "settings": expected,
                                "backend": backend})
        if engine_info is not None:
            summary["meta"]["engine"] = engine_info
        write_json(out_dir / BENCH_SUMMARY_FILE, summary)
    print_bench_table(summary)
    return summary


def check_drafting(policy: str | None, gamma: int | None, proposer: str, backend: str = "hf"
                   ) -> DraftingPolicy:  # fmt: skip
    """The parsed ``--policy``/``--gamma``, with ``--proposer`` checked (before any load)."""
    pol = parse_policy(policy, gamma)
    parse_proposer(proposer)
    own = ("model", "ngram") if backend == "llamacpp" else ("model",)  # the engine's drafting
    if backend != "hf" and (pol.kind != "fixed" or proposer not in own):
        raise SpecfairError(f"--backend {backend} runs --policy fixed:N with --proposer "
                            f"{' or '.join(own)} only; the other drafting policies run in the "
                            "hf backend")
    if backend == "llamacpp" and proposer == "ngram" and pol.gamma < NGRAM_LOOKUP:
        raise SpecfairError(f"--backend llamacpp --proposer ngram needs --gamma >= {NGRAM_LOOKUP}"
                            f" (llama.cpp drafts at least its {NGRAM_LOOKUP}-token lookup "
                            f"length), got {pol.gamma}")
    return pol


def estimate_command(
    target: str,
    drafter: str,
    suite: str | Path,
    out_dir: str | Path,
    split: str = "test",
    n_per_task: int | None = None,
    gamma: int = DEFAULT_GAMMA,
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    cost_ratio: float | None = None,
    responses: str | Path | None = None,
    bench_summary: str | Path | None = None,
    chunk_size: int = 32,
    dtype: str = "auto",
    device: str = "auto",
    seed: int = 0,
    progress: bool = True,
    kernels: str = "auto",
    data_root: str | Path | None = None,
) -> dict:
    """Teacher-forced estimate on the suite; write ``out_dir/estimate.jsonl`` (resumable),
    ``out_dir/responses.jsonl`` (or use ``responses``), ``out_dir/estimate_summary.json`` and
    ``out_dir/policy.json`` (γ per task for ``bench --policy table:...``);
    print the table (and, given a ``bench_summary.json`` — default ``out_dir``'s if present —
    the comparison with the measured α); return the summary.

    ``cost_ratio`` (c) None = measured with :func:`measure_cost_ratio`.
    """
    check_run_args(split=split, n_per_task=n_per_task, gamma=gamma,
                   max_new_tokens=max_new_tokens, temperature=temperature,
                   cost_ratio=cost_ratio, seed=seed)
    out_dir, dt = _prepare(out_dir, target, drafter, max_new_tokens, dtype, device)
    for f, flag in ((responses, "--responses"), (bench_summary, "--bench-summary")):
        if f is not None and not Path(f).is_file():
            raise SpecfairError(f"{flag} {f}: no such file")
    prompts, suite_settings = select_prompts(suite, split, n_per_task, seed, data_root)
    del suite_settings["tasks"]
    check_out_files(out_dir, (ESTIMATE_FILE, ESTIMATE_SUMMARY_FILE, POLICY_FILE,
                              *(() if responses else (RESPONSES_FILE,))))
    extra = {**suite_settings, "dtype": dt}
    expected = run_settings(target=str(target), drafter=str(drafter), temperature=temperature,
                            max_new_tokens=max_new_tokens, **extra)
    with dir_lock(out_dir, "specfair estimate"):
        check_settings(out_dir / ESTIMATE_FILE, read_jsonl(out_dir / ESTIMATE_FILE), expected)
        pair = load_pair(target, drafter, dtype=dtype, device=device, kernels=kernels)
        path = run_estimate(
            pair.target, pair.drafter, pair.tokenizer, prompts, out_dir,
            drafter_label=str(drafter), target_label=str(target),
            max_new_tokens=max_new_tokens, temperature=temperature, chunk_size=chunk_size,
            gamma=gamma, responses_path=responses, progress=progress, extra_settings=extra,
        )
        c_source = "given"
        if cost_ratio is None:
            cost_ratio = measure_cost_ratio(pair.target, pair.drafter)
            c_source = "measured (median single-token forward, 128-token context)"
        summary = summarize_estimate(
            path, c=cost_ratio, gamma=gamma, seed=seed,
            meta={"c_source": c_source, "suite": suite_settings["suite"], "split": split,
                  "n_per_task": n_per_task, "target": str(target), "settings": expected},
        )
        write_json(out_dir / ESTIMATE_SUMMARY_FILE, summary)
        write_json(out_dir / POLICY_FILE, policy_from_summary(summary, split=split))
    comparison = None
    bpath = Path(bench_summary) if bench_summary else out_dir / BENCH_SUMMARY_FILE
    if bpath.exists():
        comparison = compare_estimate_to_bench(summary, read_json(bpath))
    print_estimate_table(summary, comparison=comparison)
    return summary


def generate_command(
    target: str, prompt: str, *, drafter: str | None = None, policy: str | None = None,
    gamma: int | None = None, proposer: str = "model", task: str | None = None,
    max_new_tokens: int = 128, dtype: str = "auto", device: str = "auto", kernels: str = "auto",
):  # fmt: skip
    """``specfair generate`` with speculative decoding: the greedy answer to ``prompt`` (chat
    template applied) under a drafting ``policy`` and ``proposer``; prints the answer, then one
    line naming the drafter used and the drafting counts on stderr; returns the
    :class:`GenerationResult`. A per-task export drafts with the copy its task router picks (the
    prompt has no label; the base drafter below the router's threshold or without a router).
    ``task`` (or the routed task) picks a ``table:`` policy's γ (None: its global γ)."""
    from specfair.backends.hf import hf_generate

    if not prompt.strip():
        raise SpecfairError("empty prompt")
    pol = check_drafting(policy, gamma, proposer)
    if uses_drafter(proposer) and drafter is None:
        raise SpecfairError(f"--proposer {proposer} needs --drafter (or use --proposer ngram)")
    drafter = drafter if uses_drafter(proposer) else None
    routing = "none"
    if drafter is not None:
        routing = check_routing("classifier" if has_task_router(drafter) else "oracle", drafter)
    index = load_index(index_dir(proposer)) if index_dir(proposer) else None
    if index is not None:
        known = index.tasks + list(index.manifest.get("tasks_without_text") or [])
        if task is not None and task not in known:
            raise SpecfairError(f"--task {task!r}: the index {index.path} has tasks "
                                f"{', '.join(sorted(known))}")
        if task is None and routing != "classifier" and len(index.tasks) > 1:
            raise SpecfairError(f"--proposer {proposer}: the index has {len(index.tasks)} "
                                f"tasks ({', '.join(index.tasks)}); give --task (or a drafter "
                                "export with a task router)")
    out_dt = _prepare_dtype(target, drafter, max_new_tokens, dtype, device)
    pair = _load_bench_pair(target, drafter, routing, out_dt, dtype, device, kernels)
    drafts = as_proposer(pair.drafter) if pair.drafter is not None else None
    routed = routing != "none" and task is None
    if routed:
        task = route_of(drafts, prompt)
    ids = encode_prompt(pair.tokenizer, prompt)
    task_index = None
    if index is not None:
        index.check_tokenizer(pair.tokenizer)
        task_index = index.for_task(task if task is not None or len(index.tasks) > 1
                                    else index.tasks[0])  # fmt: skip
    res = hf_generate("sd", pair.target, drafts.for_task(task) if drafts else None,
                      pair.tokenizer, ids, gamma=pol.for_task(task),
                      draft_threshold=pol.draft_threshold, proposer=proposer,
                      index=task_index, max_new_tokens=max_new_tokens, temperature=0.0,
                      top_p=1.0, top_k=0, seed=None)  # fmt: skip
    print(res.text)
    used = "none" if drafter is None else "plain" if routing == "none" else (
        f"task {task}" if task else "base")
    by = ", ".join(f"{k} {d['steps']} steps ({d['accepted']}/{d['drafted']} accepted)"
                   for k, d in res.by_proposer().items()) or "no drafts"  # fmt: skip
    print(f"drafter: {used} (routing: {routing}); [{pol.spec}, {proposer}] "
          f"{len(res.tokens)} tokens in {res.wall_s:.2f}s, {len(res.steps)} steps: {by}",
          file=sys.stderr)
    return res
