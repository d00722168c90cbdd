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
# The 256 byte-level symbols, as in Qwen's (GPT-2 style) byte-level BPE, with no merges.
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
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=None, fuse_unk=False))
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


def tiny_config(vocab_size: int, layers: int = 2, hidden: int = 32, tok=None) -> Qwen2Config:
    eos = tok.convert_tokens_to_ids("<|im_end|>") if tok is not None else 0
    pad = tok.convert_tokens_to_ids("<|endoftext|>") if tok is not None else 0
    return Qwen2Config(
        vocab_size=vocab_size,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        eos_token_id=eos,
        pad_token_id=pad,
        bos_token_id=pad,
    )


def make_tiny_model(
    path: Path, vocab_size: int, seed: int, layers: int = 2, tok=None, hidden: int = 32
) -> Path:
    tok = tok or make_tokenizer()
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(tiny_config(vocab_size, layers, hidden, tok)).eval()
    # Sharper logits than the default init so that greedy ties are improbable and
    # drafts are sometimes accepted and sometimes rejected.
    with torch.no_grad():
        model.model.embed_tokens.weight.mul_(20.0)
    model.generation_config.eos_token_id = tok.convert_tokens_to_ids("<|im_end|>")
    model.generation_config.pad_token_id = tok.convert_tokens_to_ids("<|endoftext|>")
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def make_tiny_pair(root: Path, mismatched: bool = False) -> tuple[Path, Path]:
    """Target (vocab 288, 2 layers) and drafter (vocab 272, 1 layer) sharing one tokenizer
    of 259 tokens (256 bytes and 3 specials).

    With ``mismatched=True`` the drafter's tokenizer differs in one token string.
    """
    root = Path(root)
    tok = make_tokenizer()
    target = make_tiny_model(root / "target", 288, seed=0, layers=2, tok=tok)
    dtok = tok
    if mismatched:
        chars = list(CHARS)
        chars[chars.index("z")], chars[chars.index("y")] = "y", "z"
        dtok = make_tokenizer(chars)
    drafter = make_tiny_model(root / "drafter", 272, seed=1, layers=1, tok=dtok)
    return target, drafter
