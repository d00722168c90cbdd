"""An fp32 copy of a cached bf16 model, for CPUs without native bf16.

The cache holds each known model once, in bf16 (half the disk). On a CPU without bf16 support
``dtype=auto`` means fp32, and upcasting 1.5B parameters at every load costs seconds, so the
first fp32 load writes ``<model dir>/fp32/`` (safetensors, same config and tokenizer), which
later loads memory-map directly. The upcast is exact, so the logits are identical. An fp32 load
asked for on a CPU with bf16 (``--dtype float32``, the fp32 path's stand-in) maps the same copy,
so both paths hold the same memory. Set ``SPECFAIR_FP32_CACHE=0`` to turn the copy off.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from specfair.atomic import atomic_dir
from specfair.schema import loads_json

MIRROR = "fp32"
STAMP = "specfair-fp32.json"
INDEX = "model.safetensors.index.json"
SHARD_BYTES = 1 << 30  # read from the bf16 source at a time (2 GiB once float32)


def enabled() -> bool:
    return os.environ.get("SPECFAIR_FP32_CACHE", "1") not in ("0", "false", "no", "")


def _stamp(src_dir: Path) -> dict:
    """What the copy was made from: name, size and mtime of every source weight file."""
    files = sorted(src_dir.glob("*.safetensors"))
    return {f.name: [f.stat().st_size, f.stat().st_mtime_ns] for f in files}


def mirror_dir(src_dir: Path) -> Path:
    return Path(src_dir) / MIRROR


def is_fresh(src_dir: Path) -> bool:
    stamp = mirror_dir(src_dir) / STAMP
    try:
        return loads_json(stamp.read_text()) == _stamp(Path(src_dir))
    except (OSError, ValueError):
        return False


def ensure_fp32_mirror(src_dir: Path) -> Path:
    """Return ``src_dir/fp32``, writing it first (atomically) if missing or stale."""
    from safetensors.torch import save_file

    from specfair.models.weights import read_tensor_group, tensor_groups

    src_dir = Path(src_dir)
    out = mirror_dir(src_dir)
    if is_fresh(src_dir):
        return out
    with atomic_dir(out) as tmp:
        for f in src_dir.iterdir():
            if f.is_file() and f.suffix != ".safetensors" and not f.name.endswith(INDEX):
                shutil.copy2(f, tmp / f.name)
        files = sorted(src_dir.glob("*.safetensors"))
        parts = [(f, names) for f in files for names in tensor_groups(f, SHARD_BYTES)]
        weight_map, total = {}, 0
        for i, (f, names) in enumerate(parts):  # a shard at a time: memory ~ 3 x SHARD_BYTES
            name = f.name if len(parts) == len(files) else f"model-fp32-{i + 1:05d}.safetensors"
            tensors, meta = read_tensor_group(f, names)
            tensors = {k: (t.float() if t.is_floating_point() else t).contiguous()
                       for k, t in tensors.items()}
            save_file(tensors, tmp / name, metadata={**meta, "format": "pt"})
            weight_map |= dict.fromkeys(tensors, name)
            total += sum(t.numel() * t.element_size() for t in tensors.values())
            del tensors
        if len(parts) > 1:  # transformers reads the shards through their index
            (tmp / INDEX).write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
        cfg = tmp / "config.json"
        if cfg.is_file():
            c = loads_json(cfg.read_text(encoding="utf-8"))
            for key in ("torch_dtype", "dtype"):
                if key in c:
                    c[key] = "float32"
            cfg.write_text(json.dumps(c, indent=2) + "\n")
        (tmp / STAMP).write_text(json.dumps(_stamp(src_dir)) + "\n")
    return out


def wants_fp32_mirror(dtype: torch.dtype, device: torch.device) -> bool:
    """An fp32 load on a CPU: what ``dtype=auto`` picks without native bf16, and the fp32 path
    asked for on a CPU with it (``--dtype float32``), which thus maps the same file as a CPU
    without bf16 does instead of upcasting into anonymous memory: the embedding then stays
    mostly on disk (a lookup reads only its rows), 1.5 GB less resident for the offline pair."""
    return enabled() and device.type == "cpu" and dtype == torch.float32


def fp32_dir(src_dir: Path) -> Path:
    """The fp32 copy of a cached model (see :mod:`specfair.models.fp32cache`), written once;
    the bf16 directory itself where the cache cannot be written."""
    from rich.console import Console

    if is_fresh(src_dir):
        return mirror_dir(src_dir)
    console = Console(stderr=True)
    try:
        with console.status(f"writing a float32 copy of {src_dir.name} once (fp32 maps it)"):
            return ensure_fp32_mirror(src_dir)
    except OSError as e:
        console.print(f"[yellow]could not write the float32 copy ({e}); upcasting at load[/]")
        return src_dir
