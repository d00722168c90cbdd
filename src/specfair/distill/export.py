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

    DIR/router.json          {"format": "specfair-task-routed/1", "mode": "adapter"|"merged",
                              "base": "base", "tasks": {task: "tasks/<adapter name>"}}
    DIR/base/                the shared drafter (HF directory; used for unknown task labels)
    DIR/tasks/<name>/        the task's LoRA adapter (peft: adapter_config.json +
                             adapter_model.safetensors), or with ``merge_per_task=True`` a full
                             merged HF directory, which vLLM can serve as above (one engine per
                             task, or pick the directory by task when launching).

``load_drafter(DIR)`` returns a model for the first layout and a :class:`TaskRoutedDrafter` for
the second.
"""

from __future__ import annotations

import copy
import json
import shutil
import tempfile
from pathlib import Path

import torch

from specfair.atomic import atomic_dir
from specfair.distill.guard import check_model
from specfair.distill.router import TaskRoutedDrafter, adapter_name, copy_top
from specfair.errors import SpecfairError
from specfair.measure.io import read_json
from specfair.models.weights import load_adapter, load_hf_model, read_tensors, require_safetensors

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def _save_hf(model, tokenizer, path: Path, dtype: str, meta: dict | None) -> None:
    if dtype != "auto":
        model = model.to(_DTYPES[dtype])
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
    if out.exists() and not _is_export(out) and any(out.iterdir()):
        raise SpecfairError(f"export directory {out} exists and is not a drafter export")
    check_model(student, f"drafter for {out}")
    # Write next to the destination and rename at the end: a crash (or a full disk) never
    # leaves a half-written export where a finished one is expected.
    with atomic_dir(out) as tmp:
        _export_into(student, tokenizer, tmp, tasks, merge_per_task, dtype, dict(meta or {}))
    return out


def _is_export(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "router.json").is_file()


def _export_into(student, tokenizer, out: Path, tasks, merge_per_task, dtype, meta) -> None:
    if not tasks:
        model = copy.deepcopy(student)
        if _is_peft(model):
            model = model.merge_and_unload()
        _save_hf(model.eval(), tokenizer, out, dtype, meta)
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
        "format": "specfair-task-routed/1", "mode": "merged" if merge_per_task else "adapter",
        "base": "base", "tasks": routes, "meta": meta,
    }, indent=2))


def _top_keys(model, n: int) -> list[str]:
    first = model.config.num_hidden_layers - n
    return [k for k in model.state_dict() if k.startswith("model.norm.") or (
        k.startswith("model.layers.") and int(k.split(".")[2]) >= first)]


def _export_top_layers(router, tokenizer, out: Path, merged: bool, dtype: str,
                       meta: dict) -> None:
    """Per-task copies of the top layers (``method = "topn"``): ``base/`` and, per task, only
    the top layers' tensors (``mode: "top-layers"``), or full models (``merged``)."""
    from safetensors.torch import save_file

    # the task copies' own layers: those not shared with the base (distill.router.copy_top)
    some = next(iter(router.models.values())).model.layers
    n = sum(a is not b for a, b in zip(some, router.base.model.layers, strict=True))
    _save_hf(copy.deepcopy(router.base).eval(), tokenizer, out / "base", dtype, meta)
    routes = {}
    for t, model in router.models.items():
        dest = out / "tasks" / adapter_name(t)
        if merged:
            _save_hf(copy.deepcopy(model).eval(), tokenizer, dest, dtype, {**meta, "task": t})
        else:
            dest.mkdir(parents=True, exist_ok=True)
            sd = model.state_dict()
            cast = (lambda x: x) if dtype == "auto" else (lambda x: x.to(_DTYPES[dtype]))
            save_file({k: cast(sd[k]).contiguous() for k in _top_keys(model, n)},
                      str(dest / "model.safetensors"))
        routes[t] = f"tasks/{adapter_name(t)}"
    (out / "router.json").write_text(json.dumps({
        "format": "specfair-task-routed/1", "mode": "merged" if merged else "top-layers",
        "base": "base", "top_layers": n, "tasks": routes, "meta": meta}, indent=2))


ROUTER_FORMAT = "specfair-task-routed/1"
ROUTER_MODES = ("adapter", "merged", "top-layers")


def read_router(export_dir: str | Path) -> dict:
    """``router.json`` of a per-task export, checked: ``{"mode", "base": Path, "tasks": {task:
    Path}, "top_layers": int | None}``; every path stays inside ``export_dir``. A corrupt file
    (not JSON, wrong types, a path leading out) is one error naming it."""
    root = Path(export_dir)
    path = root / "router.json"
    spec = read_json(path)

    def bad(why: str) -> SpecfairError:
        return SpecfairError(f"{path}: {why}")

    if not isinstance(spec, dict) or spec.get("format") != ROUTER_FORMAT:
        raise bad(f"not a per-task drafter index (format {ROUTER_FORMAT!r} expected)")
    if spec.get("mode") not in ROUTER_MODES:
        raise bad(f"mode {spec.get('mode')!r} is not one of {', '.join(ROUTER_MODES)}")
    tasks = spec.get("tasks")
    if not isinstance(tasks, dict) or not all(isinstance(t, str) for t in tasks):
        raise bad("'tasks' must be a table of task -> sub-directory")
    top = spec.get("top_layers")
    if spec["mode"] == "top-layers" and not (type(top) is int and top >= 1):
        raise bad(f"top_layers = {top!r} should be a whole number >= 1")

    def inside(what: str, sub) -> Path:
        if not isinstance(sub, str) or not sub or Path(sub).is_absolute():
            raise bad(f"{what} = {sub!r} should be a relative path inside {root}")
        p = root / sub
        if not p.resolve().is_relative_to(root.resolve()):
            raise bad(f"{what} = {sub!r} leads outside the export directory {root}")
        return p

    return {"mode": spec["mode"], "base": inside("base", spec.get("base", "base")),
            "tasks": {t: inside(f"tasks.{t}", sub) for t, sub in tasks.items()},
            "top_layers": top}


def _load_top_layers(base, tasks: dict[str, Path], n: int) -> TaskRoutedDrafter:
    """Per task: ``base`` with the task's top ``n`` layers (the rest shared, not copied)."""
    models = {}
    for t, sub in tasks.items():
        require_safetensors(sub, "model")
        model = copy_top(base, n)
        sd = read_tensors(sub / "model.safetensors")
        if sorted(sd) != sorted(_top_keys(model, n)):
            raise SpecfairError(f"{sub}: not the top {n} layers of the base drafter")
        model.load_state_dict(sd, strict=False)
        models[t] = model.eval()
    return TaskRoutedDrafter(None, base=base, models=models)


def load_drafter(path: str | Path, *, dtype: str = "auto", device: str = "cpu"):
    """A drafter exported by :func:`export_drafter`: a ``*ForCausalLM`` (eval mode), or a
    :class:`TaskRoutedDrafter` for a per-task directory (``router.json``)."""
    path = Path(path)
    torch_dtype = "auto" if dtype == "auto" else _DTYPES[dtype]

    def load(p: Path):
        return load_hf_model(p, torch_dtype).to(device).eval()

    if not (path / "router.json").is_file():
        if not (path / "config.json").is_file():
            raise SpecfairError(f"not a drafter directory (no config.json/router.json): {path}")
        return load(path)
    spec = read_router(path)
    tasks = spec["tasks"]
    if spec["mode"] == "adapter":  # refuse pickled adapters before any weights load
        for sub in tasks.values():
            require_safetensors(sub, "adapter_model")
    base = load(spec["base"])
    if spec["mode"] == "merged":
        models = {t: load(sub) for t, sub in tasks.items()}
        return TaskRoutedDrafter(None, base=base, models=models)
    if spec["mode"] == "top-layers":
        return _load_top_layers(base, tasks, spec["top_layers"])
    if not tasks:
        return base
    model = base
    for t, sub in tasks.items():
        model = load_adapter(model, sub, adapter_name(t))
    model.eval()
    return TaskRoutedDrafter(model, list(tasks))
