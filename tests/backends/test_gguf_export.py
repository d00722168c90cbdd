"""`specfair export-gguf`: a drafter directory written as GGUF and read back by transformers."""

import json

import pytest
import torch

from specfair.backends.gguf_export import export_gguf
from specfair.errors import SpecfairError


def _logits(model_dir, gguf_file=None):
    from transformers import AutoModelForCausalLM

    kw = {"gguf_file": gguf_file.name} if gguf_file else {}
    src = gguf_file.parent if gguf_file else model_dir
    m = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32, **kw).eval()
    ids = torch.tensor([[257, 40, 41, 42, 10, 258, 257, 100, 101]])
    with torch.no_grad():
        return m(ids).logits[0]


@pytest.mark.parametrize("outtype,tol", [("f32", 1e-5), ("f16", 0.05), ("q8_0", 0.5)])
def test_roundtrip_logits(tiny_pair, tmp_path, outtype, tol):
    out = export_gguf(tiny_pair[1], tmp_path / f"d-{outtype}.gguf", outtype=outtype)
    ref, got = _logits(tiny_pair[1]), _logits(None, out)
    assert got.shape == ref.shape
    assert (got - ref).abs().max().item() < tol
    assert (got.argmax(-1) == ref.argmax(-1)).all()


def test_metadata_and_tokenizer(tiny_pair, tmp_path):
    import gguf
    from transformers import AutoTokenizer

    out = export_gguf(tiny_pair[0], tmp_path / "t.gguf", outtype="f32")
    r = gguf.GGUFReader(out)
    f = {k: v.contents() for k, v in r.fields.items() if not k.startswith("tokenizer.ggml.tok")}
    assert f["general.architecture"] == "qwen2" and f["tokenizer.ggml.pre"] == "qwen2"
    tok = AutoTokenizer.from_pretrained(tiny_pair[0])
    assert f["tokenizer.ggml.eos_token_id"] == tok.eos_token_id
    assert len(r.fields["tokenizer.ggml.tokens"].data) == 288  # padded to the embedding size
    assert "output.weight" not in {t.name for t in r.tensors}  # tied embeddings
    gtok = AutoTokenizer.from_pretrained(tmp_path, gguf_file="t.gguf")
    assert gtok("ab  c<|im_end|>").input_ids == tok("ab  c<|im_end|>").input_ids


def test_per_task_export_needs_task(tiny_pair, tmp_path):
    import shutil

    root = tmp_path / "exp"
    shutil.copytree(tiny_pair[1], root / "base")
    shutil.copytree(tiny_pair[1], root / "tasks" / "code")
    (root / "router.json").write_text(json.dumps(
        {"format": "specfair-task-routed/1", "mode": "merged", "base": "base",
         "tasks": {"code": "tasks/code"}}))
    with pytest.raises(SpecfairError, match="--task"):
        export_gguf(root, tmp_path / "x.gguf")
    with pytest.raises(SpecfairError, match="no drafter for task"):
        export_gguf(root, tmp_path / "x.gguf", task="math")
    out = export_gguf(root, tmp_path / "code.gguf", task="code", outtype="f32")
    assert (_logits(tiny_pair[1]) - _logits(None, out)).abs().max() < 1e-5
    assert not list(tmp_path.glob(".*.partial"))


def test_bad_inputs(tiny_pair, tmp_path):
    with pytest.raises(SpecfairError, match=".gguf"):
        export_gguf(tiny_pair[1], tmp_path / "x.bin")
    with pytest.raises(SpecfairError, match="outtype"):
        export_gguf(tiny_pair[1], tmp_path / "x.gguf", outtype="q4_k_m")
    with pytest.raises(SpecfairError, match="config.json"):
        export_gguf(tmp_path, tmp_path / "x.gguf")


def test_an_existing_gguf_is_replaced_only_with_force(tiny_pair, tmp_path, cli):
    out = tmp_path / "d.gguf"
    out.write_bytes(b"an earlier export")
    with pytest.raises(SpecfairError, match="exists; pass --force"):
        export_gguf(tiny_pair[1], out, outtype="f32")
    assert out.read_bytes() == b"an earlier export"
    code, _, err = cli("export-gguf", tiny_pair[1], out, "--outtype", "f32", "--force")
    assert code == 0, err
    assert (_logits(tiny_pair[1]) - _logits(None, out)).abs().max() < 1e-5


def test_merged_lora_drafter_roundtrip(lora_drafter, tiny_pair, tmp_path):
    out = export_gguf(lora_drafter, tmp_path / "ft.gguf", outtype="f32")
    ref, got = _logits(lora_drafter), _logits(None, out)
    assert (got - ref).abs().max() < 1e-4
    assert (ref - _logits(tiny_pair[1])).abs().max() > 0.1  # the LoRA changed the drafter


def test_top_layer_per_task_export_roundtrip(tiny_pair, tmp_path):
    """A per-task export of top-layer copies (``method = "topn"``): the task's GGUF gives the
    task's model's logits, not the base's."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from specfair.drafters.export import export_drafter
    from specfair.drafters.router import TaskRoutedDrafter, copy_top

    base = AutoModelForCausalLM.from_pretrained(tiny_pair[1], dtype=torch.float32).eval()
    task = copy_top(base, 1)
    with torch.no_grad():
        for p in task.model.layers[-1].parameters():
            p.add_(0.05 * torch.randn_like(p))
    root = export_drafter(TaskRoutedDrafter(None, base=base, models={"code": task}),
                          AutoTokenizer.from_pretrained(tiny_pair[1]), tmp_path / "exp",
                          tasks=["code"], meta={"top_layers": 1})
    out = export_gguf(root, tmp_path / "code.gguf", task="code", outtype="f32")
    ids = torch.tensor([[257, 40, 41, 42, 10, 258, 257, 100, 101]])
    with torch.no_grad():
        want, base_logits = task(ids).logits[0], base(ids).logits[0]
    got = _logits(None, out)
    assert (got - want).abs().max() < 1e-4 and (got - base_logits).abs().max() > 1e-3
