"""Export a (fine-tuned) drafter to GGUF so llama.cpp can serve it: ``specfair export-gguf``.

Written with the ``gguf`` package, laid out as llama.cpp's ``convert_hf_to_gguf.py`` writes a
Qwen2 model (arch ``qwen2``; gpt2-style BPE tokenizer with pre-tokenizer ``qwen2``, merges,
special ids and chat template from the tokenizer files; token types CONTROL for special added
tokens, USER_DEFINED for other added tokens and for the ``[PADi]`` fillers up to the embedding
size). Norms and biases stay float32; matrices are written as ``outtype``
(f32 | f16 | bf16 | q8_0 | q5_0 | q4_0, quantized by ``gguf.quants``; a matrix whose rows are
not a multiple of the block size falls back to f16). ``output.weight`` is written only when the
model does not tie it to the embeddings (llama.cpp then reuses ``token_embd``).

Inputs: an HF directory (``config.json`` + safetensors: a merged LoRA export, ``base/``, a
merged per-task directory), or a per-task export (``router.json``) with ``task=`` — the task's
LoRA adapter is merged into ``base/`` first.

Only Qwen2-architecture models (the default pair) are supported; for others use llama.cpp's own
``convert_hf_to_gguf.py`` (in the llama.cpp sources the installer unpacks).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from specfair.atomic import atomic_file
from specfair.drafters.load import load_drafter, read_router
from specfair.errors import SpecfairError
from specfair.models.finite import check_model
from specfair.models.weights import load_adapter, load_hf_model, pretrained, require_safetensors

OUTTYPES = ("f32", "f16", "bf16", "q8_0", "q5_0", "q4_0")
# HF layer module -> llama.cpp's GGUF tensor name (blk.N.<name>.weight), as its converter does
GGUF_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}  # fmt: skip


def export_gguf(
    src: str | Path, out: str | Path, *, outtype: str = "q8_0", task: str | None = None,
    name: str | None = None, force: bool = False,
) -> Path:  # fmt: skip
    """Write ``src`` (see module doc) as a GGUF file ``out`` (atomically); returns ``out``.
    An existing ``out`` is replaced only with ``force``."""
    import gguf
    from transformers import AutoTokenizer

    if outtype not in OUTTYPES:
        raise SpecfairError(f"outtype must be one of {', '.join(OUTTYPES)}, got {outtype!r}")
    src, out = Path(src).expanduser(), Path(out).expanduser()
    check_output(out, force)
    model, tok_dir, desc = _load(src, task)
    cfg = model.config
    if cfg.model_type != "qwen2":
        raise SpecfairError(
            f"export-gguf supports Qwen2 models only (this is {cfg.model_type!r}); use llama.cpp's "
            "convert_hf_to_gguf.py for other architectures"
        )
    check_model(model, desc)
    tok = pretrained(AutoTokenizer, tok_dir)

    with atomic_file(out) as tmp:  # a symlink at ``out`` is replaced, never written through
        w = gguf.GGUFWriter(str(tmp), "qwen2")
        _add_hparams(w, cfg, name or desc, outtype)
        _add_tokenizer(w, tok, tok_dir, int(cfg.vocab_size))
        _add_tensors(w, model, outtype)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    return out


def check_output(out: Path, force: bool) -> None:
    """Refuse an output that is not a writable ``.gguf`` file path before anything loads: a
    directory, a path under a file, or an existing file without ``force``."""
    if out.suffix != ".gguf":
        raise SpecfairError(f"output file must end in .gguf: {out}")
    if out.is_dir():
        raise SpecfairError(f"output {out} is a directory, not a .gguf file")
    parent = next((p for p in out.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise SpecfairError(f"output {out}: {parent} is a file, not a directory")
    if out.exists() and not force:
        raise SpecfairError(f"output {out} exists; pass --force to overwrite it")


def _load(src: Path, task: str | None):
    """(model in float32, tokenizer directory, description) of an export or HF directory;
    weights through :mod:`specfair.models.weights` (safetensors only)."""
    import torch

    if (src / "router.json").is_file():
        spec = read_router(src)
        base_dir = spec["base"]
        if task is None:
            raise SpecfairError(
                f"{src} holds one drafter per task; pick one with --task (one of: "
                f"{', '.join(spec['tasks'])}), or export the shared drafter {base_dir}"
            )
        if task not in spec["tasks"]:
            raise SpecfairError(f"{src}: no drafter for task {task!r}")
        sub = spec["tasks"][task]
        if spec["mode"] == "merged" or (sub / "config.json").is_file():  # a full directory
            return load_hf_model(sub, torch.float32), sub, f"{src} task {task} (merged)"
        if spec["mode"] == "top-layers":  # the task's top layers over the shared base
            model = load_drafter(src, dtype="float32").models[task]
            return model, base_dir, f"{src} task {task} (top layers over the base)"
        require_safetensors(sub, "adapter_model")  # before the base loads
        base = load_hf_model(base_dir, torch.float32)
        model = load_adapter(base, sub).merge_and_unload()
        return model, base_dir, f"{src} task {task} (LoRA merged into base)"
    if not (src / "config.json").is_file():
        raise SpecfairError(f"not a Hugging Face model directory (no config.json): {src}")
    if task is not None:
        raise SpecfairError(f"{src} is a single drafter; --task applies to per-task exports")
    return load_hf_model(src, torch.float32), src, str(src)


def _add_hparams(w, cfg, name: str, outtype: str) -> None:
    """The model's name, shape, RoPE base, norm epsilon and file type."""
    w.add_name(name)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    rope = getattr(cfg, "rope_parameters", None) or {}
    w.add_rope_freq_base(float(rope.get("rope_theta", getattr(cfg, "rope_theta", 1e6))))
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_file_type(_file_type(outtype))


def _file_type(outtype: str):
    import gguf

    return {
        "f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16, "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
        "q5_0": gguf.LlamaFileType.MOSTLY_Q5_0, "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
    }[outtype]  # fmt: skip


def _add_tokenizer(w, tok, tok_dir: Path, n_vocab: int) -> None:
    """The gpt2-style BPE vocabulary (see :func:`_token_list`), merges, special ids (EOS: the
    tokenizer's) and chat template."""
    import gguf

    tokens, types = _token_list(tok, n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(tok_dir, load_merges=True, n_vocab=n_vocab)
    if tok.eos_token_id is not None:  # the tokenizer's EOS (<|im_end|> for chat models)
        special.special_token_ids["eos"] = int(tok.eos_token_id)
    if tok.chat_template and not special.chat_template:
        special.chat_template = tok.chat_template
    special.add_to_gguf(w)


def _token_list(tok, n_vocab: int) -> tuple[list[str], list]:
    """Token strings and types for every id below the embedding size: CONTROL for special
    added tokens, USER_DEFINED for other added tokens and the ``[PADi]`` fillers."""
    import gguf

    by_id = {i: t for t, i in tok.get_vocab().items()}
    if max(by_id) >= n_vocab:
        raise SpecfairError(f"tokenizer has ids beyond the embedding size {n_vocab}")
    added = {i: t for i, t in tok.added_tokens_decoder.items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i not in by_id:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.USER_DEFINED)
        elif i in added:
            tokens.append(by_id[i])
            types.append(
                gguf.TokenType.CONTROL if added[i].special else gguf.TokenType.USER_DEFINED
            )
        else:
            tokens.append(by_id[i])
            types.append(gguf.TokenType.NORMAL)
    return tokens, types


def _add_tensors(w, model, outtype: str) -> None:
    """Embeddings, final norm, ``output.weight`` (untied models only) and every layer's
    weights and biases under llama.cpp's names."""
    cfg = model.config
    sd = {k: v.detach().float().numpy() for k, v in model.state_dict().items()}
    _add_tensor(w, "token_embd.weight", sd["model.embed_tokens.weight"], outtype)
    _add_tensor(w, "output_norm.weight", sd["model.norm.weight"], outtype)
    if not getattr(cfg, "tie_word_embeddings", False):
        _add_tensor(w, "output.weight", sd["lm_head.weight"], outtype)
    for i in range(cfg.num_hidden_layers):
        for hf, gg in GGUF_LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                key = f"model.layers.{i}.{hf}.{kind}"
                if key in sd:
                    _add_tensor(w, f"blk.{i}.{gg}.{kind}", sd[key], outtype)


def _add_tensor(w, name: str, arr: np.ndarray, outtype: str) -> None:
    """A matrix in ``outtype`` (see :func:`_matrix`); a vector (norm, bias) in float32."""
    if arr.ndim == 2:
        data, qt = _matrix(arr, outtype)
        w.add_tensor(name, data, raw_dtype=qt)
    else:
        w.add_tensor(name, arr.astype(np.float32))


def _matrix(w: np.ndarray, outtype: str):
    """(data, raw_dtype or None) of a weight matrix in ``outtype``."""
    import gguf

    if outtype == "f32":
        return w.astype(np.float32), None
    if outtype == "f16":
        return w.astype(np.float16), None
    qtype = {
        "bf16": gguf.GGMLQuantizationType.BF16, "q8_0": gguf.GGMLQuantizationType.Q8_0,
        "q5_0": gguf.GGMLQuantizationType.Q5_0, "q4_0": gguf.GGMLQuantizationType.Q4_0,
    }[outtype]  # fmt: skip
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if w.shape[-1] % block:
        return w.astype(np.float16), None
    return gguf.quants.quantize(w.astype(np.float32), qtype), qtype
