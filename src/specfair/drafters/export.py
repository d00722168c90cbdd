"""Export a distilled drafter as standard Hugging Face directories, and load it back.

Single drafter (``uniform`` / ``balanced`` / ``disparity``; LoRA merged with
``merge_and_unload``): ``DIR/`` holds ``config.json``, ``generation_config.json``,
``model.safetensors``, the tokenizer files and ``specfair_distill.json`` (provenance). It is an
ordinary checkpoint: ``AutoModelForCausalLM.from_pretrained(DIR)``, ``specfair bench --drafter
DIR``, or vLLM::

    from vllm import LLM
    llm = LLM(model="Qwen/Qwen2.5-Coder-1.5B-Instruct",
              speculative_config={"model": DIR, "num_speculative_tokens": 5})

Per-task drafters (``per-task``)::

    DIR/router.json          {"format": ROUTER_FORMAT, "mode": "adapter"|"merged",
                              "base": "base", "tasks": {task: "tasks/<adapter name>"}}
    DIR/base/                the shared drafter (HF directory; used for unknown task labels)
    DIR/tasks/<name>/        the task's LoRA adapter (peft: adapter_config.json +
                             adapter_model.safetensors), or with ``merge_per_task=True`` a full
                             merged HF directory, which vLLM can serve as above (one engine per
                             task, or pick the directory by task when launching).

:func:`specfair.drafters.load.load_drafter` reads both layouts back.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

from specfair.atomic import atomic_dir
from specfair.drafters.load import DTYPES, ROUTER_FORMAT, is_export, top_keys
from specfair.drafters.router import TaskRoutedDrafter, adapter_name
from specfair.errors import SpecfairError
from specfair.models.finite import check_model


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def _save_hf(model, tokenizer, path: Path, dtype: str, meta: dict | None) -> None:
    if dtype != "auto":
        model = model.to(DTYPES[dtype])
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path, safe_serialization=True)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(path)
    if tokenizer is not None:
        tokenizer.save_pretrained(path)
    if meta is not None:
        (path / "specfair_distill.json").write_text(json.dumps(meta, indent=2))


def export_drafter(
    student,
    tokenizer,
    out_dir: str | Path,
    *,
    tasks: list[str] | None = None,
    merge_per_task: bool = False,
    dtype: str = "auto",
    meta: dict | None = None,
) -> Path:
    """Write the trained ``student`` (plain model or peft model) to ``out_dir``.

    ``tasks`` given (and ``student`` a peft model with one adapter per task): the per-task layout.
    The caller's model is not modified (LoRA merges happen on a copy).
    """
    out = Path(out_dir)
    if out.exists() and not is_export(out) and any(out.iterdir()):
        raise SpecfairError(f"export directory {out} exists and is not a drafter export")
    check_model(student, f"drafter for {out}")
    # Write next to the destination and rename at the end: a crash (or a full disk) never
    # leaves a half-written export where a finished one is expected.
    with atomic_dir(out) as tmp:
        _export_into(student, tokenizer, tmp, tasks, merge_per_task, dtype, dict(meta or {}))
    return out


def _unchanged(model, dtype: str):
    """``model`` itself where writing it leaves it as it is (no cast), else a copy: an export
    never holds the model twice for nothing (nor its shared frozen layers once per task)."""
    return model if dtype == "auto" else copy.deepcopy(model)


def _export_into(student, tokenizer, out: Path, tasks, merge_per_task, dtype, meta) -> None:
    if not tasks:
        if _is_peft(student):
            student = copy.deepcopy(student).merge_and_unload()
        _save_hf(_unchanged(student, dtype), tokenizer, out, dtype, meta)
        return
    if isinstance(student, TaskRoutedDrafter) and student.models:
        _export_top_layers(student, tokenizer, out, merge_per_task, dtype, meta)
        return
    if not _is_peft(student):
        raise SpecfairError("per-task export needs a peft model with one adapter per task")
    base = copy.deepcopy(student).unload()
    _save_hf(base.eval(), tokenizer, out / "base", dtype, meta)
    routes = {}
    for t in tasks:
        name = adapter_name(t)
        dest = out / "tasks" / name
        if merge_per_task:
            m = copy.deepcopy(student)
            m.set_adapter(name)
            merged = m.merge_and_unload(adapter_names=[name])
            _save_hf(merged.eval(), tokenizer, dest, dtype, {**meta, "task": t})
        else:
            with tempfile.TemporaryDirectory(dir=out) as tmp:
                student.save_pretrained(tmp, selected_adapters=[name])
                src = Path(tmp) / name if (Path(tmp) / name).is_dir() else Path(tmp)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copytree(src, dest)
        routes[t] = f"tasks/{name}"
    (out / "router.json").write_text(json.dumps({
        "format": ROUTER_FORMAT, "mode": "merged" if merge_per_task else "adapter",
        "base": "base", "tasks": routes, "meta": meta,
    }, indent=2))


def _export_top_layers(router, tokenizer, out: Path, merged: bool, dtype: str,
                       meta: dict) -> None:
    """Per-task copies of the top layers (``method = "topn"``): ``base/`` and, per task, only
    the top layers' tensors (``mode: "top-layers"``), or full models (``merged``)."""
    from safetensors.torch import save_file

    # the task copies' own layers: those not shared with the base (drafters.router.copy_top)
    some = next(iter(router.models.values())).model.layers
    n = sum(a is not b for a, b in zip(some, router.base.model.layers, strict=True))
    _save_hf(_unchanged(router.base, dtype), tokenizer, out / "base", dtype, meta)
    routes = {}
    for t, model in router.models.items():
        dest = out / "tasks" / adapter_name(t)
        if merged:
            _save_hf(_unchanged(model, dtype), tokenizer, dest, dtype, {**meta, "task": t})
        else:
            dest.mkdir(parents=True, exist_ok=True)
            sd = model.state_dict()
            cast = (lambda x: x) if dtype == "auto" else (lambda x: x.to(DTYPES[dtype]))
            save_file({k: cast(sd[k]).contiguous() for k in top_keys(model, n)},
                      str(dest / "model.safetensors"))
        routes[t] = f"tasks/{adapter_name(t)}"
    (out / "router.json").write_text(json.dumps({
        "format": ROUTER_FORMAT, "mode": "merged" if merged else "top-layers",
        "base": "base", "top_layers": n, "tasks": routes, "meta": meta}, indent=2))
