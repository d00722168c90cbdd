import pytest
import torch
from tiny import write_tiny_gguf

from specfair.errors import SpecfairError
from specfair.models import (
    check_tokenizers_match,
    load_model,
    load_pair,
    load_tokenizer,
    resolve_dtype,
    resolve_source,
)
from specfair.models.hardware import resolve_device


def test_load_hf_dir(tiny_pair):
    target, _ = tiny_pair
    model = load_model(target, dtype="float32", device="cpu")
    assert not model.training
    assert model.dtype == torch.float32
    assert model.config.vocab_size == 288
    tok = load_tokenizer(target)
    assert tok.decode(tok("héllo wörld").input_ids) == "héllo wörld"


def test_load_gguf_same_logits_and_tokenizer(tiny_pair, tmp_path):
    target, _ = tiny_pair
    gguf = write_tiny_gguf(target, tmp_path / "tiny.gguf")
    hf = load_model(target, dtype="float32")
    gg = load_model(gguf, dtype="float32")
    ids = torch.tensor([[1, 2, 3, 200, 5, 258]])
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, gg(ids).logits)
    check_tokenizers_match(load_tokenizer(target), load_tokenizer(gguf))


def test_load_pair_accepts_different_embedding_sizes(tiny_pair):
    pair = load_pair(*tiny_pair, dtype="float32")
    assert pair.target.config.vocab_size != pair.drafter.config.vocab_size
    assert pair.tokenizer.eos_token_id == 258


def test_mismatched_tokenizers_name_first_differing_token(mismatched_pair):
    with pytest.raises(SpecfairError, match=r"token id 88 is 'y' in the target but 'z'"):
        load_pair(*mismatched_pair)


def test_special_token_mismatch(tiny_pair):
    a = load_tokenizer(tiny_pair[0])
    b = load_tokenizer(tiny_pair[1])
    b.eos_token = "<|endoftext|>"
    with pytest.raises(SpecfairError, match="eos_token_id"):
        check_tokenizers_match(a, b)


def test_resolve_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path))
    with pytest.raises(SpecfairError, match="models fetch"):
        resolve_source("qwen2.5-coder-0.5b-instruct")
    with pytest.raises(SpecfairError, match="GGUF file not found"):
        resolve_source(tmp_path / "nope.gguf")
    with pytest.raises(SpecfairError, match="no config.json"):
        resolve_source(tmp_path)
    with pytest.raises(SpecfairError, match="not found"):
        resolve_source("./missing-dir")
    assert resolve_source("Qwen/Qwen2.5-0.5B").kind == "hub"


def test_refuses_pickle_only_dir(tiny_pair, tmp_path):
    (tmp_path / "config.json").write_text((tiny_pair[0] / "config.json").read_text())
    weights = load_model(tiny_pair[0], dtype="float32").state_dict()
    torch.save(weights, tmp_path / "pytorch_model.bin")
    with pytest.raises(SpecfairError, match=r"no model\*\.safetensors.*pytorch_model\.bin"):
        load_model(tmp_path)


def test_dtype_and_device():
    assert resolve_dtype("float32") is torch.float32
    assert resolve_dtype("bfloat16") is torch.bfloat16
    assert resolve_dtype("auto", torch.device("cuda")) is torch.bfloat16
    with pytest.raises(SpecfairError):
        resolve_dtype("int3")
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(SpecfairError):
        resolve_device("tpu")


def test_packed_kernels_same_greedy_and_close_logits(tiny_pair):
    from specfair.models.cpu_kernels import PackedLinear, packed_linear_available

    if not packed_linear_available():
        pytest.skip("PyTorch without oneDNN")
    ref = load_model(tiny_pair[0], dtype="float32")
    fast = load_model(tiny_pair[0], dtype="float32", kernels="packed")
    assert isinstance(fast.lm_head, PackedLinear)
    assert isinstance(fast.model.layers[0].mlp.up_proj, PackedLinear)
    ids = torch.randint(0, 259, (1, 17))
    with torch.no_grad():
        torch.testing.assert_close(ref(ids).logits, fast(ids).logits, rtol=1e-4, atol=1e-4)
        a = ref.generate(ids, max_new_tokens=12, do_sample=False)
        b = fast.generate(ids, max_new_tokens=12, do_sample=False)
    assert torch.equal(a, b)
    with pytest.raises(SpecfairError, match="unknown kernels"):
        load_model(tiny_pair[0], kernels="magic")
    with pytest.raises(SpecfairError, match="needs a CPU, float32"):
        load_model(tiny_pair[0], dtype="bfloat16", kernels="packed")
