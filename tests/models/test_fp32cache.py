import json
import shutil

import pytest
import torch
from transformers import AutoModelForCausalLM

from specfair.models import load_model, load_pair
from specfair.models.fp32cache import ensure_fp32_mirror, is_fresh, mirror_dir
from specfair.models.memory import file_mappings

NAME = "qwen2.5-coder-0.5b-instruct"


@pytest.fixture(autouse=True)
def no_native_bf16(monkeypatch):
    """The copy is made on CPUs without native bf16 (like the development machine)."""
    import specfair.models.hardware as hardware

    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: False)


def _bf16_cache(src, home):
    """A tiny model placed in the cache under a known name, stored in bf16 like a fetch does."""
    dst = home / "models" / NAME
    shutil.copytree(src, dst)
    model = AutoModelForCausalLM.from_pretrained(dst, dtype=torch.bfloat16)
    for f in dst.glob("*.safetensors"):
        f.unlink()
    model.save_pretrained(dst)
    return dst


def test_fp32_copy_written_once_and_gives_identical_logits(tiny_pair, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path))
    src = _bf16_cache(tiny_pair[1], tmp_path)
    assert not is_fresh(src)
    ids = torch.randint(0, 259, (1, 11))
    ref = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)  # upcast at load
    model = load_model(NAME, dtype="float32", device="cpu")
    assert is_fresh(src)
    mirror = mirror_dir(src)
    weights = next(mirror.glob("*.safetensors"))
    assert json.loads((mirror / "config.json").read_text())["dtype"] == "float32"
    assert weights.stat().st_size > 1.9 * next(src.glob("*.safetensors")).stat().st_size
    assert next(model.parameters()).dtype == torch.float32
    with torch.no_grad():
        assert torch.equal(ref(ids).logits, model(ids).logits)
    mtime = weights.stat().st_mtime_ns
    load_model(NAME, dtype="float32", device="cpu")
    assert weights.stat().st_mtime_ns == mtime  # reused, not rewritten
    assert not list(src.glob(".fp32.*"))  # no temporary left behind


def test_fp32_copy_stale_after_source_changes_and_can_be_disabled(tiny_pair, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path))
    src = _bf16_cache(tiny_pair[1], tmp_path)
    ensure_fp32_mirror(src)
    assert is_fresh(src)
    AutoModelForCausalLM.from_pretrained(src).to(torch.bfloat16).save_pretrained(src)
    assert not is_fresh(src)
    shutil.rmtree(mirror_dir(src))
    monkeypatch.setenv("SPECFAIR_FP32_CACHE", "0")
    load_model(NAME, dtype="float32", device="cpu")
    assert not mirror_dir(src).exists()
    load_model(NAME, dtype="bfloat16", device="cpu")
    assert not mirror_dir(src).exists()


def test_bf16_load_does_not_write_a_copy(tiny_pair, tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path))
    src = _bf16_cache(tiny_pair[1], tmp_path)
    load_model(NAME, dtype="bfloat16", device="cpu")
    assert not mirror_dir(src).exists()


def test_pair_with_identical_tokenizer_files_skips_second_tokenizer(tiny_pair, monkeypatch):
    import specfair.models.load as load

    calls = []
    real = load.load_tokenizer
    monkeypatch.setattr(load, "load_tokenizer", lambda s: calls.append(s) or real(s))
    load_pair(*tiny_pair)
    assert calls == [tiny_pair[0]]


def test_the_fp32_path_asked_for_on_a_bf16_cpu_maps_the_same_copy(tiny_pair, tmp_path,
                                                                   monkeypatch):
    """``--dtype float32`` on a CPU with bf16 stands in for a CPU without it: it maps the fp32
    copy as that CPU does (the embedding stays on disk) instead of upcasting into anonymous
    memory; ``dtype=auto`` there (bf16) writes no copy."""
    import specfair.models.hardware as hardware

    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path))
    monkeypatch.setattr(hardware, "cpu_supports_bf16", lambda: True)
    src = _bf16_cache(tiny_pair[1], tmp_path)
    load_model(NAME, dtype="auto", device="cpu")
    assert not mirror_dir(src).exists()
    model = load_model(NAME, dtype="float32", device="cpu")
    assert is_fresh(src)
    emb = model.get_input_embeddings().weight
    assert emb.dtype == torch.float32
    assert any(lo <= emb.data_ptr() < hi for lo, hi in file_mappings())  # mapped, not a copy
