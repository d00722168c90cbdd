"""What a deployed drafter is on disk, read back: a plain Hugging Face directory, or a per-task
export (``router.json``: the base drafter plus, per task, a LoRA adapter, a merged model or the
task's top layers; :mod:`specfair.drafters.export` writes both). :func:`load_drafter` returns a
``*ForCausalLM`` or a :class:`~specfair.drafters.router.TaskRoutedDrafter`; :func:`read_router`
checks ``router.json`` (format, mode, every path inside the export)."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from specfair.drafters.router import SwappedModels, TaskRoutedDrafter, adapter_name
from specfair.errors import SpecfairError
from specfair.measure.io import read_json
from specfair.models.memory import file_mappings, page_out
from specfair.models.weights import (
    check_complete,
    load_adapter,
    load_hf_model,
    read_tensors,
    require_safetensors,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def is_export(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "router.json").is_file()


def top_keys(model, n: int) -> list[str]:
    first = model.config.num_hidden_layers - n
    return [k for k in model.state_dict() if k.startswith("model.norm.") or (
        k.startswith("model.layers.") and int(k.split(".")[2]) >= first)]


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
    """Per task: ``base`` with the task's top ``n`` layers and final norm (the rest shared, not
    copied), read from its file when the task is routed to and held one task at a time
    (:class:`~specfair.drafters.router.SwappedModels`): n per-task copies cost one copy's
    layers, not n. Every file is checked here (exactly those tensors, finite, of the base's
    shapes), before any is used."""
    first = base.config.num_hidden_layers - n
    body = base.model
    # the shapes and classes of the layers a task replaces, on the meta device (no memory)
    with torch.device("meta"):
        skeleton = {i: type(body.layers[i])(base.config, i) for i in range(first, len(body.layers))}
        norm = copy.deepcopy(body.norm).to("meta")
    shapes = {f"model.layers.{i}.{k}": v.shape for i, layer in skeleton.items()
              for k, v in layer.state_dict().items()}
    shapes |= {f"model.norm.{k}": v.shape for k, v in norm.state_dict().items()}
    ref = body.embed_tokens.weight
    for sub in tasks.values():
        require_safetensors(sub, "model")
        check_complete(read_tensors(sub / "model.safetensors"), shapes, sub / "model.safetensors")

    def build(task: str):
        path = tasks[task] / "model.safetensors"
        tensors = read_tensors(path)  # checked again: the file may have changed since
        check_complete(tensors, shapes, path)
        memo = {id(m): m for m in [body.embed_tokens, body.rotary_emb,
                                   base.get_output_embeddings(), *body.layers[:first]]}
        memo |= {id(body.layers[i]): copy.deepcopy(layer) for i, layer in skeleton.items()}
        memo[id(body.norm)] = copy.deepcopy(norm)
        model = copy.deepcopy(base, memo=memo)
        model.load_state_dict({k: v.to(dtype=ref.dtype, device=ref.device)
                               for k, v in tensors.items()}, strict=False, assign=True)
        return model.eval()

    return TaskRoutedDrafter(None, base=base, models=SwappedModels(tasks, build))


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    pa, pb = list(a.named_parameters()), list(b.named_parameters())
    return len(pa) == len(pb) and all(
        na == nb and x.shape == y.shape and x.dtype == y.dtype and x.device == y.device
        and torch.equal(x, y) for (na, x), (nb, y) in zip(pa, pb, strict=True))


def share_frozen(model, base) -> int:
    """Point ``model``'s embedding, decoder layers, final norm and head at ``base``'s wherever
    their weights are equal (the frozen layers of a drafter trained in its top layers): any
    number of drafters on one base then hold its frozen layers once. The pages of the weights
    dropped are given back (:func:`specfair.models.memory.page_out`: the comparison read them
    from the file). Returns how many modules are now shared; a model of another shape shares
    none."""
    mine, theirs = model.model, base.model
    if type(model) is not type(base) or len(mine.layers) != len(theirs.layers):
        return 0
    dropped, mapped = [], file_mappings()

    def same(a, b) -> bool:
        if a is b:
            return False
        equal = _equal(a, b)
        # the pages the comparison read go back now, one module at a time, both sides (what
        # is kept is read again when used or packed): never two files resident whole
        page_out([*a.parameters(), *b.parameters()], mapped)
        if equal:
            dropped.append(a)
        return equal

    for i, (a, b) in enumerate(zip(mine.layers, theirs.layers, strict=True)):
        if same(a, b):
            mine.layers[i] = b
    if same(mine.norm, theirs.norm):
        mine.norm = theirs.norm
    if same(mine.embed_tokens, theirs.embed_tokens):
        mine.embed_tokens = theirs.embed_tokens
    if same(model.get_output_embeddings(), base.get_output_embeddings()):  # tied: the embedding
        model.set_output_embeddings(base.get_output_embeddings())
    page_out((p for m in dropped for p in m.parameters()), mapped)  # again: see page_out
    return len(dropped)


def load_drafter(path: str | Path, *, dtype: str = "auto", device: str = "cpu",
                 frozen_from=None):
    """A drafter exported by :func:`export_drafter`: a ``*ForCausalLM`` (eval mode), or a
    :class:`TaskRoutedDrafter` for a per-task directory (``router.json``). ``frozen_from``: a
    loaded drafter (unpacked) whose modules the new one takes wherever their weights are equal
    (:func:`share_frozen`; not for LoRA adapters, which wrap the base's modules)."""
    path = Path(path)
    torch_dtype = "auto" if dtype == "auto" else DTYPES[dtype]

    def load(p: Path, share=None):
        model = load_hf_model(p, torch_dtype, release_pages=share is not None).to(device).eval()
        if share is not None:
            share_frozen(model, share)
        return model

    if not (path / "router.json").is_file():
        if not (path / "config.json").is_file():
            raise SpecfairError(f"not a drafter directory (no config.json/router.json): {path}")
        return load(path, frozen_from)
    spec = read_router(path)
    tasks = spec["tasks"]
    if spec["mode"] == "adapter":  # refuse pickled adapters before any weights load
        for sub in tasks.values():
            require_safetensors(sub, "adapter_model")
    base = load(spec["base"], None if spec["mode"] == "adapter" else frozen_from)
    if spec["mode"] == "merged":  # each task's model keeps its own modules where they differ
        models = {t: load(sub, base) for t, sub in tasks.items()}
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
