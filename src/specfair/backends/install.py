"""``specfair backends install|info``: build llama.cpp's server; say which engines are here."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

from specfair.backends.llama_server import (
    LLAMA_CPP_PYTHON_VERSION,
    find_llama_server,
    server_version,
)
from specfair.errors import SpecfairError


def install(name: str = "llamacpp") -> Path:
    """Build and cache ``llama-server`` (idempotent; see install_llamacpp.sh)."""
    if name != "llamacpp":
        raise SpecfairError(
            f"nothing to install for {name!r}: only llamacpp is built by specfair "
            "(hf needs nothing; vllm: pip install 'vllm>=0.12' on a GPU machine)"
        )
    script = Path(__file__).with_name("install_llamacpp.sh")
    env = {**os.environ, "PYTHON": sys.executable,
           "LLAMA_CPP_PYTHON_VERSION": LLAMA_CPP_PYTHON_VERSION}  # fmt: skip
    cmd = ["bash", str(script)]
    proc = subprocess.run(cmd, env=env)
    if proc.returncode != 0:
        raise SpecfairError(f"building llama-server failed: `{shlex.join(cmd)}` exited with "
                            f"status {proc.returncode}; its output is above")
    return find_llama_server()


def print_info() -> None:
    import transformers

    print(f"hf: transformers {transformers.__version__}")
    try:
        binary = find_llama_server()
        print(f"llamacpp: {binary} ({server_version(str(binary))})")
    except SpecfairError as e:
        print(f"llamacpp: not available ({e})")
    try:
        import vllm

        print(f"vllm: {vllm.__version__}")
    except ImportError:
        print("vllm: not installed (GPU only: pip install 'vllm>=0.12')")
