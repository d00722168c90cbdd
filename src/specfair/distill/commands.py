"""CLI glue: ``specfair distill`` -> :func:`distill_command`.

Output directory layout::

    OUT/responses.jsonl        target responses to the TRAIN prompts (cache, resumable)
    OUT/distill_config.json    the DistillConfig used
    OUT/train_log.jsonl        per-step metrics and alpha re-estimations
    OUT/checkpoints/step-N/    resumable checkpoints (latest ``keep_checkpoints`` kept)
    OUT/distill_summary.json   alpha per task before/after on the held-back TRAIN prompts
    OUT/drafter/               the exported drafter (see specfair.drafters.export)

Run it on several processes / GPUs with ``accelerate launch -m specfair distill ...``.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from specfair.defaults import DEFAULT_DRAFTER, DEFAULT_TARGET
from specfair.distill.cached import train_cached
from specfair.distill.config import DistillConfig
from specfair.distill.data import (
    assert_train_only,
    check_examples,
    examples_from_records,
    heldout_split,
    reference_examples,
    target_response_examples,
)
from specfair.distill.run_setup import make_accelerator
from specfair.distill.trainer import train
from specfair.drafters.export import export_drafter
from specfair.errors import SpecfairError
from specfair.measure.responses import read_responses, reuse_responses
from specfair.models import load_pair
from specfair.models.hardware import cpu_supports_bf16
from specfair.models.load import resolve_device, resolve_dtype
from specfair.rundir import check_out_dir, dir_lock
from specfair.tasks import load_suite


def _load_suite(suite):
    return load_suite(suite) if isinstance(suite, str | Path) else suite


def select_train_prompts(cfg: DistillConfig, prompts) -> list:
    """The first ``cfg.prompts_per_task[task]`` (else ``cfg.max_prompts_per_task``; unset or
    0: all) TRAIN prompts of each task, in suite order."""
    kept, count = [], {}
    for p in prompts:
        cap = cfg.prompts_per_task.get(p.task, cfg.max_prompts_per_task or None)
        if cap is None or count.get(p.task, 0) < cap:
            kept.append(p)
            count[p.task] = count.get(p.task, 0) + 1
    return kept


def build_examples(cfg: DistillConfig, suite, target, drafter, tokenizer, out_dir: Path,
                   accelerator=None):
    """TRAIN-split examples for ``cfg.data_source`` (generating target responses if needed),
    split into ``(train, heldout)``. Asserts that nothing comes from the test split."""

    train_prompts = select_train_prompts(cfg, suite.prompts("train"))
    test_prompts = list(suite.prompts("test"))
    assert_train_only(train_prompts, test_prompts)
    if not train_prompts:
        raise SpecfairError("the suite has no TRAIN-split prompts")

    train_ids = {p.id for p in train_prompts}
    examples = []
    if cfg.data_source in ("target", "both"):
        cache = out_dir / "responses.jsonl"
        if cfg.responses_path:  # reuse e.g. specfair estimate's cache (train prompts only)
            if accelerator is None or accelerator.is_main_process:
                reuse_responses(cfg.responses_path, cache, train_ids,
                                max_new_tokens=cfg.response_max_new_tokens,
                                temperature=cfg.response_temperature)
            if accelerator is not None:
                accelerator.wait_for_everyone()
        rank = accelerator.process_index if accelerator is not None else 0
        world = accelerator.num_processes if accelerator is not None else 1
        target_response_examples(
            train_prompts, target, drafter, tokenizer, cache,
            max_new_tokens=cfg.response_max_new_tokens, temperature=cfg.response_temperature,
            gamma=cfg.response_gamma, seed=cfg.seed, rank=rank, world_size=world,
        )
        if accelerator is not None:
            accelerator.wait_for_everyone()
        examples += examples_from_records(read_responses(cache), train_prompts)
    if cfg.data_source in ("reference", "both"):
        examples += reference_examples(train_prompts, tokenizer, target)
    if not examples:
        raise SpecfairError(f"no training examples for data_source={cfg.data_source!r}")
    check_examples(examples, train_prompts)
    return heldout_split(examples, cfg.heldout_per_task, cfg.seed)


def distill_command(
    out_dir: str | Path,
    *,
    suite: str | Path = "default",
    target: str | None = None,
    drafter: str | None = None,
    config_file: str | Path | None = None,
    resume: bool = False,
    dtype: str = "float32",
    device: str = "auto",
    **overrides: Any,
) -> Path:
    """Fine-tune the drafter on the suite's TRAIN split; returns the exported drafter directory.

    ``overrides`` are :class:`DistillConfig` field names (None values are ignored), e.g.
    ``weighting="disparity", loss="tvd", steps=60, cheap_layers="first:12"``. ``target`` /
    ``drafter`` default to the registry's default pair. ``dtype`` is the training dtype of both
    models (float32 recommended on CPU; the target may be loaded in bfloat16 on GPU).
    """

    DistillConfig.check_flags(overrides)
    cfg = (DistillConfig.load(config_file, **overrides) if config_file
           else DistillConfig().with_overrides(**overrides))
    target, drafter = target or DEFAULT_TARGET, drafter or DEFAULT_DRAFTER
    cfg.check_models(target, drafter, flags=[k for k, v in overrides.items() if v is not None])
    out_dir = check_out_dir(out_dir)
    if resume and not (out_dir / "distill_config.json").is_file():
        raise SpecfairError(f"--resume: no previous run in {out_dir}")

    resolve_dtype(dtype, resolve_device(device))  # refuse a bad --dtype/--device now
    suite_obj = _load_suite(suite)
    cfg.check_tasks(suite_obj.tasks, str(config_file or "distill config"))
    acc = make_accelerator(cfg, cpu=True if device == "cpu" else None)
    with contextlib.ExitStack() as stack:
        if acc.is_main_process:
            stack.enter_context(dir_lock(out_dir, "specfair distill"))
        return _distill(cfg, out_dir, acc, suite_obj, target, drafter, dtype, resume)


def _distill(cfg, out_dir: Path, acc, suite_obj, target, drafter, dtype, resume) -> Path:
    """Load the pair, build the examples, train and export (under the writer lock)."""

    pair = load_pair(target, drafter, dtype, "cpu")
    pair.target.to(acc.device)  # each DDP rank on its own device
    pair.drafter.to(acc.device)
    tokenizer = pair.tokenizer
    train_ex, held_ex = build_examples(cfg, suite_obj, pair.target, pair.drafter, tokenizer,
                                       out_dir, acc)
    if acc.is_main_process:
        counts: dict[str, int] = {}
        for e in train_ex:
            counts[e.task] = counts.get(e.task, 0) + 1
        print(f"distill: {len(train_ex)} training examples over {len(counts)} tasks, "
              f"{len(held_ex)} held back for alpha; weighting={cfg.weighting}, loss={cfg.loss}, "
              f"method={cfg.method}, steps={cfg.steps}")
    if cfg.method == "topn":  # top layers on cached target signals (one process)

        if acc.num_processes > 1:
            raise SpecfairError("method='topn' runs in one process (no accelerate launch)")
        result = train_cached(cfg, pair.target, pair.drafter, train_ex, held_ex, out_dir,
                              names=(pair.target_name, pair.drafter_name),
                              store_root=out_dir / "signals",
                              bf16=cpu_supports_bf16())
    else:
        result = train(cfg, pair.target, pair.drafter, tokenizer, train_ex, held_ex, out_dir,
                       resume=resume, accelerator=acc)
    export = out_dir / "drafter"
    if acc.is_main_process:
        export_drafter(
            result.student, tokenizer, export,
            tasks=sorted({e.task for e in train_ex}) if cfg.weighting == "per-task" else None,
            merge_per_task=cfg.merge_per_task, dtype=cfg.export_dtype,
            meta={"target": pair.target_name, "drafter": pair.drafter_name,
                  "top_layers": cfg.top_layers,
                  "config": cfg.to_dict(), "steps": result.steps,
                  "alpha_before": result.alpha_before, "alpha_after": result.alpha_after},
        )
        print(f"distill: drafter written to {export}")
    acc.wait_for_everyone()
    return export


def router_train_command(drafter: str | Path, suite="default", *, n_per_task: int | None = None,
                         layer: int | None = None, threshold: float = 0.5, l2: float = 1e-3,
                         max_tokens: int = 512, dtype: str = "auto", device: str = "auto",
                         seed: int = 0, data_root: str | Path | None = None) -> dict:
    """``specfair router train``: fit the task router of a per-task export on the suite's TRAIN
    prompts (at most ``n_per_task`` per task), evaluate it on its TEST prompts, write
    ``task_router.{json,safetensors}`` and ``router_eval.json`` into the export; print the
    per-task routing accuracy; return the evaluation."""
    import math

    from specfair.drafters.routing import drafter_layers, is_routed_export, train_task_router
    from specfair.tasks import sample_per_task

    if not is_routed_export(drafter):
        raise SpecfairError(f"--drafter {drafter}: not a per-task drafter export (no router.json)")
    if n_per_task is not None and n_per_task < 1:
        raise SpecfairError(f"--n-per-task must be >= 1, got {n_per_task}")
    if not (math.isfinite(threshold) and 0.0 <= threshold <= 1.0):
        raise SpecfairError(f"--threshold must be in [0, 1], got {threshold}")
    if not (math.isfinite(l2) and l2 >= 0):
        raise SpecfairError(f"--l2 must be a finite number >= 0, got {l2}")
    if max_tokens < 1:
        raise SpecfairError(f"--max-tokens must be >= 1, got {max_tokens}")
    n_layers = drafter_layers(drafter)
    if layer is not None and not -(n_layers + 1) <= layer <= n_layers:
        raise SpecfairError(f"--layer must be in [{-(n_layers + 1)}, {n_layers}] for this "
                            f"drafter, got {layer}")
    dev = resolve_device(device)
    dt = str(resolve_dtype(dtype, dev)).replace("torch.", "")
    check_out_dir(drafter, "--drafter")
    suite_obj = load_suite(suite, data_root=data_root) if isinstance(suite, str | Path) else suite
    train_p = sample_per_task(suite_obj.prompts("train"), n_per_task, seed=seed)
    test_p = sample_per_task(suite_obj.prompts("test"), n_per_task, seed=seed)
    if len({p.task for p in train_p}) < 2:
        raise SpecfairError(f"suite {suite_obj.name}: a task router needs TRAIN prompts of two "
                            "tasks or more")
    with dir_lock(drafter, "specfair router train"):
        clf, result = train_task_router(drafter, train_p, test_p, layer=layer,
                                        threshold=threshold, l2=l2, max_tokens=max_tokens,
                                        dtype=dt, device=str(dev))
    _print_router_eval(result, clf.layer)
    return result


def _print_router_eval(result: dict, layer: int) -> None:
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    print(f"task router: layer {layer}, threshold {result['threshold']}, "
          f"train accuracy {fmt(result['train']['accuracy'])} ({result['train']['n']} prompts)")
    print(f"{'task':16s} {'n':>5s} {'accuracy':>9s} {'routed ok':>9s} {'to base':>8s}")
    for t, d in result["tasks"].items():
        print(f"{t:16s} {d['n']:5d} {d['accuracy']:9.3f} {d['routing_accuracy']:9.3f} "
              f"{d['base_share']:8.3f}")
    print(f"{'all':16s} {result['n']:5d} {fmt(result['accuracy']):>9s} "
          f"{fmt(result['routing_accuracy']):>9s}")
