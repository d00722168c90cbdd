"""What the machine offers: the torch device and the dtype that ``auto`` means on it.

The bottom of :mod:`specfair.models`: imports nothing of specfair but the error type.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from specfair.errors import SpecfairError

DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float32": torch.float32,
          "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16}  # fmt: skip


@functools.cache
def cpu_supports_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def cpu_name() -> str:
    """The CPU model and whether it has native bf16 (every measurement says which CPU)."""
    import platform

    name = ""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        name = next((ln.split(":", 1)[1].strip() for ln in lines
                     if ln.startswith("model name")), "")
    except OSError:
        pass
    bf16 = "native bf16" if cpu_supports_bf16() else "no native bf16"
    return f"{name or platform.machine()} ({bf16})"


def machine() -> dict:
    """What a timing depends on: the CPU, its cores, torch and its threads, the GPU if any."""
    import os

    return {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SpecfairError("device 'cuda' requested but CUDA is not available")
    if device not in ("cpu",) and not device.startswith("cuda"):
        raise SpecfairError(f"unknown device {device!r}; use auto, cpu or cuda")
    return torch.device(device)


def resolve_dtype(dtype: str | torch.dtype = "auto", device: torch.device | None = None):
    """``auto`` = bf16 on CUDA or on a CPU with native bf16 support, else fp32."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        device = device or resolve_device("auto")
        if device.type == "cuda" or cpu_supports_bf16():
            return torch.bfloat16
        return torch.float32
    if dtype not in DTYPES:
        raise SpecfairError(f"unknown dtype {dtype!r}; use auto, bfloat16 or float32")
    return DTYPES[dtype]
