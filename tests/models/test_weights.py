"""One weight reader: every ``from_pretrained``, peft adapter load, safetensors read and any
pickle-capable load in ``src/`` is in :mod:`specfair.models.weights`; its header check refuses
truncated and garbled safetensors files by name."""

from __future__ import annotations

import ast
import json
import re
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import specfair
from specfair.errors import SpecfairError
from specfair.models.weights import check_safetensors, read_tensors, require_safetensors

ROOT = Path(specfair.__file__).parent
OWNER = "models/weights.py"
PICKLE_MODULES = {"pickle", "cPickle", "dill", "joblib", "cloudpickle", "shelve", "marshal"}


def weight_reads(source: str) -> list[str]:
    """What in ``source`` reads weights (or could unpickle): ``from_pretrained``/
    ``load_adapter`` calls, any ``PeftModel``, ``torch.load``/``np.load``, pickle-family
    imports, and safetensors imports other than ``save_file``."""
    found = []
    for n in ast.walk(ast.parse(source)):
        if isinstance(n, ast.Attribute):
            if n.attr in ("from_pretrained", "load_adapter"):
                found.append(f"{n.attr} (line {n.lineno})")
            elif n.attr == "load" and isinstance(n.value, ast.Name) and n.value.id in (
                    "torch", "np", "numpy", *PICKLE_MODULES):
                found.append(f"{n.value.id}.load (line {n.lineno})")
        if isinstance(n, ast.Name | ast.Attribute) and "PeftModel" in getattr(
                n, "id", getattr(n, "attr", "")):
            found.append(f"PeftModel (line {n.lineno})")
        if isinstance(n, ast.Import):
            for a in n.names:
                top = a.name.split(".")[0]
                if top in PICKLE_MODULES or top == "safetensors":
                    found.append(f"import {a.name} (line {n.lineno})")
        if isinstance(n, ast.ImportFrom) and n.module:
            top = n.module.split(".")[0]
            names = {a.name for a in n.names}
            if top in PICKLE_MODULES or (top == "safetensors" and names - {"save_file"}) or (
                    top == "peft" and any("PeftModel" in x for x in names)):
                found.append(f"from {n.module} import {', '.join(sorted(names))} "
                             f"(line {n.lineno})")
    return found


def test_every_weight_read_in_src_goes_through_the_one_owner():
    found = {}
    for p in sorted(ROOT.rglob("*.py")):
        rel = p.relative_to(ROOT).as_posix()
        if rel != OWNER and (hits := weight_reads(p.read_text(encoding="utf-8"))):
            found[rel] = hits
    assert found == {}, "weights read outside specfair/models/weights.py"
    assert weight_reads((ROOT / OWNER).read_text(encoding="utf-8"))  # the owner does read


@pytest.mark.parametrize("code", [
    "AutoModelForCausalLM.from_pretrained(p)",
    "from peft import PeftModel",
    "m = peft.PeftModel.from_pretrained(b, p)",
    "peft_model.load_adapter(p, adapter_name='x')",
    "torch.load(f)",
    "np.load(f, allow_pickle=True)",
    "import pickle",
    "from safetensors.torch import load_file",
    "from safetensors import safe_open",
])
def test_the_walk_finds_each_kind_of_weight_read(code):
    assert weight_reads(code)
    assert not weight_reads("from safetensors.torch import save_file\nmodel.save_pretrained(p)")


def _file(path: Path) -> Path:
    save_file({"a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
               "b": torch.zeros(4, dtype=torch.bfloat16)}, str(path))
    return path


def test_a_whole_file_passes_and_reads(tmp_path):
    f = _file(tmp_path / "model.safetensors")
    assert set(check_safetensors(f)) == {"a", "b"}
    assert read_tensors(f)["a"].tolist() == [[0, 1, 2], [3, 4, 5]]
    assert require_safetensors(tmp_path) == [f]


def _header(header, data: bytes = b"") -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


@pytest.mark.parametrize("mangle, why", [
    (lambda b: b[:5], "shorter than the 8-byte header length"),
    (lambda b: b[:-3], "truncated"),
    (lambda b: b[:40], "truncated or garbled"),
    (lambda b: b"\xff" * 8 + b[8:], "truncated or garbled"),
    (lambda b: b[:8] + b"!" + b[9:], "not JSON"),
    (lambda b: _header([1, 2]), "not a JSON object"),
    (lambda b: _header({"a": {"dtype": "F32", "shape": [2]}}), "no valid shape"),
    (lambda b: _header({"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"1234"),
     "4 bytes for shape [2]"),
])
def test_truncated_or_garbled_files_are_one_error_naming_the_file(tmp_path, mangle, why):
    good = _file(tmp_path / "good.safetensors").read_bytes()
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(mangle(good))
    for call in (check_safetensors, read_tensors, require_safetensors):
        with pytest.raises(SpecfairError, match="not a valid safetensors file") as e:
            call(bad if call is not require_safetensors else tmp_path)
        assert str(bad) in str(e.value) and why in str(e.value)


def test_a_folder_with_only_pickled_weights_is_refused_unread(tmp_path):
    (tmp_path / "adapter_model.bin").write_bytes(b"\x80\x04not read")
    with pytest.raises(SpecfairError, match=r"no adapter_model\*\.safetensors.*adapter_model\.bin"):
        require_safetensors(tmp_path, "adapter_model")


def test_what_the_header_check_lets_through_the_reader_still_names(tmp_path):
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(_header({"a": {"dtype": "X99", "shape": [2], "data_offsets": [0, 8]}},
                            b"12345678"))
    check_safetensors(bad)  # an unknown dtype: left to the library
    with pytest.raises(SpecfairError, match=f"{re.escape(str(bad))}: not a valid safetensors"):
        read_tensors(bad)
