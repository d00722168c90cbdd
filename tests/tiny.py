"""Tiny random Qwen2-architecture model pairs for fast tests.

``make_tiny_pair(root)`` writes a target and a drafter (HF directories with safetensors and a
character-level tokenizer with Qwen-style special tokens and chat template) in well under a second.
The drafter has a different embedding-matrix size, as real pairs may.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# The 256 byte-level symbols, as in Qwen's (GPT-2 style) byte-level BPE.
CHARS = sorted(pre_tokenizers.ByteLevel.alphabet())
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def make_tokenizer(chars: list[str] | None = None) -> PreTrainedTokenizerFast:
    chars = list(CHARS if chars is None else chars)
    vocab = {c: i for i, c in enumerate(chars)}
    for s in SPECIALS:
        vocab[s] = len(vocab)
    vocab["ĠĠ"] = len(vocab)  # one merge (two spaces), so the BPE has a merge list
    merges = [("Ġ", "Ġ")]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token=None, fuse_unk=False))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=SPECIALS[1:],
    )
    fast.chat_template = CHAT_TEMPLATE
    return fast


def tiny_config(vocab_size: int, layers: int = 2, hidden: int = 32, tok=None,
                context: int = 512) -> Qwen2Config:
    eos = tok.convert_tokens_to_ids("<|im_end|>") if tok is not None else 0
    pad = tok.convert_tokens_to_ids("<|endoftext|>") if tok is not None else 0
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=context,
        tie_word_embeddings=True,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=pad,
    )


def make_tiny_model(
    path: Path, vocab_size: int, seed: int, layers: int = 2, tok=None, hidden: int = 32,
    context: int = 512,
) -> Path:
    tok = tok or make_tokenizer()
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(tiny_config(vocab_size, layers, hidden, tok, context)).eval()
    # Sharper logits than the default init so that greedy ties are improbable and
    # drafts are sometimes accepted and sometimes rejected.
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(20.0)
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tok.convert_tokens_to_ids("<|endoftext|>")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_tiny_pair(root: Path, mismatched: bool = False,
                   context: int = 512) -> tuple[Path, Path]:
    """Target (vocab 288, 2 layers) and drafter (vocab 272, 1 layer) sharing one tokenizer
    of 260 tokens (256 bytes, 3 specials, one merge), ``context`` positions each.

    With ``mismatched=True`` the drafter's tokenizer differs in one token string.
    """
    root = Path(root)
    tok = make_tokenizer()
    target = make_tiny_model(root / "target", 288, seed=0, layers=2, tok=tok, context=context)
    dtok = tok
    if mismatched:
        chars = list(CHARS)
        chars[chars.index("z")], chars[chars.index("y")] = "y", "z"
        dtok = make_tokenizer(chars)
    drafter = make_tiny_model(root / "drafter", 272, seed=1, layers=1, tok=dtok,
                              context=context)
    return target, drafter


def write_tiny_gguf(model_path: Path, out_file: Path) -> Path:
    """Write a float32 GGUF (arch ``qwen2``, gpt2-style tokenizer) of a tiny HF model directory,
    laid out as llama.cpp's converter does, so the GGUF loading path can be tested offline."""
    import gguf
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from specfair.backends.gguf_export import GGUF_LAYER_NAMES

    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(model_path)
    cfg = model.config
    w = gguf.GGUFWriter(str(out_file), "qwen2")
    w.add_name("tiny-qwen2")
    w.add_block_count(cfg.num_hidden_layers)
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    vocab = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    tokens = [t for t, _ in vocab] + [f"[PAD{i}]" for i in range(len(vocab), cfg.vocab_size)]
    specials = set(tok.all_special_tokens)
    types = [
        gguf.TokenType.CONTROL if t in specials
        else gguf.TokenType.USER_DEFINED if t.startswith("[PAD")
        else gguf.TokenType.NORMAL
        for t in tokens
    ]  # fmt: skip
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("qwen2")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(["Ġ Ġ"])
    w.add_eos_token_id(tok.eos_token_id)
    w.add_pad_token_id(tok.pad_token_id)
    w.add_add_bos_token(False)
    w.add_chat_template(tok.chat_template)
    sd = model.state_dict()
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"].numpy())
    w.add_tensor("output_norm.weight", sd["model.norm.weight"].numpy())
    w.add_tensor("output.weight", sd["lm_head.weight"].numpy())
    for i in range(cfg.num_hidden_layers):
        for hf, gg in GGUF_LAYER_NAMES.items():
            for kind in ("weight", "bias"):
                key = f"model.layers.{i}.{hf}.{kind}"
                if key in sd:
                    w.add_tensor(f"blk.{i}.{gg}.{kind}", sd[key].numpy())
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return out_file
