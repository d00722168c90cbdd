"""CLI glue: load the pair and the suite, run, summarise, write JSON, print tables."""

from __future__ import annotations

from pathlib import Path

from specfair.errors import SpecfairError
from specfair.measure.bench import BENCH_SUMMARY_FILE, run_bench
from specfair.measure.estimate import ESTIMATE_SUMMARY_FILE, measure_cost_ratio, run_estimate
from specfair.measure.io import read_json, write_json
from specfair.measure.summary import (
    compare_estimate_to_bench,
    print_bench_table,
    print_estimate_table,
    summarize_bench,
    summarize_estimate,
)


def select_prompts(
    suite: str | Path, split: str = "test", n_per_task: int | None = None, seed: int = 0,
    data_root: str | Path | None = None,
):  # fmt: skip
    """The suite's prompts of ``split``, at most ``n_per_task`` per task (seeded choice)."""
    from specfair.tasks import load_suite, sample_per_task

    prompts = load_suite(suite, data_root=data_root).prompts(split)
    prompts = sample_per_task(prompts, n_per_task, seed=seed)
    if not prompts:
        raise SpecfairError(f"suite {suite}: no prompts in split {split!r}")
    return prompts


def bench_command(
    target: str,
    drafter: str,
    suite: str | Path,
    out_dir: str | Path,
    split: str = "test",
    n_per_task: int | None = None,
    gamma: int = 5,
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
) -> dict:
    """Benchmark AR vs SD on the suite; write ``out_dir/bench.jsonl`` (resumable) and
    ``out_dir/bench_summary.json``; print the table; return the summary.

    ``backend``: "hf" (specfair's transformers loop), "llamacpp" or "vllm" (see
    :mod:`specfair.backends`; ``backend_options`` go to its constructor)."""
    from specfair.models import load_pair

    if gamma < 1:
        raise SpecfairError(f"gamma must be >= 1, got {gamma}")
    prompts = select_prompts(suite, split, n_per_task, seed, data_root)
    out_dir = Path(out_dir)
    engine_info = None
    if backend == "hf":
        pair = load_pair(target, drafter, dtype=dtype, device=device, kernels=kernels)
        path = run_bench(
            pair,
            prompts,
            out_dir,
            gamma=gamma,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            drafter_label=getattr(pair, "drafter_name", None) or drafter,
            target_label=getattr(pair, "target_name", None) or target,
            seed=seed,
            progress=progress,
        )
    else:
        from specfair.backends import open_backend

        engine = open_backend(backend, target, drafter, gamma=gamma, **(backend_options or {}))
        try:  # the engine (servers) is always released, also on errors and Ctrl-C
            engine_info = engine.info()
            path = run_bench(
                None, prompts, out_dir, gamma=gamma, max_new_tokens=max_new_tokens,
                temperature=temperature, seed=seed, progress=progress, backend=engine,
            )  # fmt: skip
        finally:
            engine.close()
    summary = summarize_bench(path, seed=seed)
    summary["meta"].update({"suite": str(suite), "split": split, "n_per_task": n_per_task})
    summary["meta"]["backend"] = backend
    if engine_info is not None:
        summary["meta"]["engine"] = engine_info
    write_json(out_dir / BENCH_SUMMARY_FILE, summary)
    print_bench_table(summary)
    return summary


def estimate_command(
    target: str,
    drafter: str,
    suite: str | Path,
    out_dir: str | Path,
    split: str = "test",
    n_per_task: int | None = None,
    gamma: int = 5,
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
    ``out_dir/responses.jsonl`` (or use ``responses``) and ``out_dir/estimate_summary.json``;
    print the table (and, given a ``bench_summary.json`` — default ``out_dir``'s if present —
    the comparison with the measured α); return the summary.

    ``cost_ratio`` (c) None = measured with :func:`measure_cost_ratio`.
    """
    from specfair.models import load_pair

    prompts = select_prompts(suite, split, n_per_task, seed, data_root)
    pair = load_pair(target, drafter, dtype=dtype, device=device, kernels=kernels)
    out_dir = Path(out_dir)
    label = getattr(pair, "drafter_name", None) or drafter
    path = run_estimate(
        pair.target,
        pair.drafter,
        pair.tokenizer,
        prompts,
        out_dir,
        drafter_label=label,
        max_new_tokens=max_new_tokens,
        temperature=temperature,
        chunk_size=chunk_size,
        gamma=gamma,
        responses_path=responses,
        progress=progress,
    )
    c_source = "given"
    if cost_ratio is None:
        cost_ratio = measure_cost_ratio(pair.target, pair.drafter)
        c_source = "measured (median single-token forward, 128-token context)"
    summary = summarize_estimate(
        path,
        c=cost_ratio,
        gamma=gamma,
        seed=seed,
        meta={
            "c_source": c_source,
            "suite": str(suite),
            "split": split,
            "n_per_task": n_per_task,
            "target": getattr(pair, "target_name", target),
        },
    )
    write_json(out_dir / ESTIMATE_SUMMARY_FILE, summary)
    comparison = None
    bpath = Path(bench_summary) if bench_summary else out_dir / BENCH_SUMMARY_FILE
    if bpath.exists():
        comparison = compare_estimate_to_bench(summary, read_json(bpath))
    print_estimate_table(summary, comparison=comparison)
    return summary
