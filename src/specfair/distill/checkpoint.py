"""Training checkpoints without pickle: tensors in safetensors, everything else in JSON.

A checkpoint directory ``<out>/checkpoints/step-XXXXXX/`` holds::

    state.json                    {"format", "step", "sampler", "alpha_before"}
    trainable.safetensors         the trainable parameters by name
    optimizer.json/.safetensors   optimizer.state_dict()
    scheduler.json/.safetensors   scheduler.state_dict()
    rng.rankR.json/.safetensors   torch / python / numpy (/ cuda) RNG states of rank R

Loading reads only JSON and safetensors, so opening someone else's run directory cannot run
their code. A state dict is split by :func:`encode` into a JSON tree and a flat dict of
tensors; only the types listed there are written, and :func:`decode` only rebuilds those.
Checkpoints of older versions (``*.pt`` pickles) are refused, never read.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from specfair.atomic import remove
from specfair.errors import SpecfairError
from specfair.measure.io import read_json
from specfair.models.weights import check_complete, read_tensors
from specfair.schema import loads_json

FORMAT = "specfair-checkpoint/2"

# ---------------------------------------------------------------------------- state <-> files


def encode(obj, tensors: dict[str, torch.Tensor]):
    """``obj`` as a JSON-able tree; tensors move to ``tensors`` (keyed by their number).
    Allowed: None, bool, int, float, str, list, tuple, dict, torch.Tensor, numpy arrays."""
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, torch.Tensor):
        key = str(len(tensors))
        tensors[key] = obj.detach().cpu().contiguous()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        return {"__ndarray__": obj.tolist(), "dtype": str(obj.dtype)}
    if isinstance(obj, tuple):
        return {"__tuple__": [encode(v, tensors) for v in obj]}
    if isinstance(obj, list):
        return [encode(v, tensors) for v in obj]
    if isinstance(obj, dict):
        if all(isinstance(k, str) and not k.startswith("__") for k in obj):
            return {k: encode(v, tensors) for k, v in obj.items()}
        return {"__items__": [[encode(k, tensors), encode(v, tensors)] for k, v in obj.items()]}
    raise TypeError(f"checkpoint: cannot store a {type(obj).__name__}")


def decode(obj, tensors: dict[str, torch.Tensor]):
    """The inverse of :func:`encode`."""
    if isinstance(obj, list):
        return [decode(v, tensors) for v in obj]
    if not isinstance(obj, dict):
        return obj
    if "__tensor__" in obj:
        return tensors[obj["__tensor__"]]
    if "__ndarray__" in obj:
        return np.asarray(obj["__ndarray__"], dtype=np.dtype(obj["dtype"]))
    if "__tuple__" in obj:
        return tuple(decode(v, tensors) for v in obj["__tuple__"])
    if "__items__" in obj:
        return {decode(k, tensors): decode(v, tensors) for k, v in obj["__items__"]}
    return {k: decode(v, tensors) for k, v in obj.items()}


def save_state(obj, folder: Path, name: str) -> None:
    """Write ``obj`` as ``folder/name.json`` + ``folder/name.safetensors``."""
    tensors: dict[str, torch.Tensor] = {}
    tree = encode(obj, tensors)
    save_file(tensors, str(folder / f"{name}.safetensors"))
    (folder / f"{name}.json").write_text(json.dumps(tree))


def load_state(folder: Path, name: str):
    """Read back what :func:`save_state` wrote (JSON and safetensors only)."""
    try:
        tensors = read_tensors(folder / f"{name}.safetensors")
        return decode(loads_json((folder / f"{name}.json").read_text()), tensors)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise SpecfairError(f"damaged checkpoint {folder} ({name}): {e}") from e


# ---------------------------------------------------------------------------- RNG


def get_rng() -> dict:
    return {"torch": torch.get_rng_state(), "python": random.getstate(),
            "numpy": np.random.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng(s: dict) -> None:
    torch.set_rng_state(s["torch"])
    random.setstate(s["python"])
    np.random.set_state(s["numpy"])
    if s.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(s["cuda"])


# ---------------------------------------------------------------------------- checkpoints


def latest_checkpoint(out_dir: Path) -> Path | None:
    ckpts = sorted((out_dir / "checkpoints").glob("step-[0-9]*"))
    ckpts = [c for c in ckpts if (c / "state.json").is_file() and not c.name.endswith(".tmp")]
    return ckpts[-1] if ckpts else None


def save_checkpoint(out_dir: Path, step: int, acc, student, trainable_names, optimizer,
                    scheduler, sampler, alpha_before, keep: int) -> None:
    """Write ``step-XXXXXX`` via a temporary directory (all ranks), keep the latest ``keep``."""
    root = out_dir / "checkpoints"
    final = root / f"step-{step:06d}"
    tmp = root / f"step-{step:06d}.tmp"
    if acc.is_main_process:
        remove(tmp)  # a symlink there: the link, never its target
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    save_state(get_rng(), tmp, f"rng.rank{acc.process_index}")
    if acc.is_main_process:
        named = dict(student.named_parameters())
        save_file({n: named[n].detach().cpu().contiguous() for n in trainable_names},
                  str(tmp / "trainable.safetensors"))
        save_state(optimizer.state_dict(), tmp, "optimizer")
        save_state(scheduler.state_dict(), tmp, "scheduler")
    acc.wait_for_everyone()
    if acc.is_main_process:
        (tmp / "state.json").write_text(json.dumps(
            {"format": FORMAT, "step": step, "sampler": sampler.state_dict(),
             "alpha_before": alpha_before}))
        remove(final)
        tmp.rename(final)
        done = sorted(c for c in root.glob("step-[0-9]*") if not c.name.endswith(".tmp"))
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    acc.wait_for_everyone()


def load_checkpoint(ckpt: Path, rank: int, student, trainable_names, optimizer, scheduler,
                    sampler) -> tuple[int, dict]:
    """Restore a checkpoint into the given objects; returns ``(step, alpha_before)``."""
    state = read_json(ckpt / "state.json")
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise SpecfairError(
            f"checkpoint {ckpt} is in an old format (pickle files), which is never loaded; "
            f"delete {ckpt.parent} to train from the start")
    file = ckpt / "trainable.safetensors"
    try:
        params = read_tensors(file)  # finite
    except (OSError, ValueError) as e:
        raise SpecfairError(f"damaged checkpoint {ckpt}: {e}") from e
    named = dict(student.named_parameters())
    check_complete(params, {n: named[n].shape for n in trainable_names}, file)
    with torch.no_grad():
        for n in trainable_names:
            named[n].copy_(params[n])
    optimizer.load_state_dict(load_state(ckpt, "optimizer"))
    scheduler.load_state_dict(load_state(ckpt, "scheduler"))
    sampler.load_state_dict(state["sampler"])
    rng = f"rng.rank{rank}" if (ckpt / f"rng.rank{rank}.json").is_file() else "rng.rank0"
    set_rng(load_state(ckpt, rng))
    return int(state["step"]), state.get("alpha_before", {})
