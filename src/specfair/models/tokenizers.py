"""Check that two tokenizers agree, so a drafter's token ids mean the same to the target."""

from __future__ import annotations

from specfair.errors import SpecfairError


def _id_to_token(tok) -> dict[int, str]:
    return {i: t for t, i in tok.get_vocab().items()}


def check_tokenizers_match(a, b, name_a: str = "target", name_b: str = "drafter") -> None:
    """Raise ``SpecfairError`` naming the first differing token if the two tokenizers disagree.

    They agree when every id known to both maps to the same token string, ids known to only one
    form a tail beyond the other's vocabulary (padding rows such as GGUF's ``[PAD151665]``, never
    produced by the tokenizer), and the special tokens (bos/eos/pad and every token either
    calls special) have the same ids in both. ``unk`` is not compared: a byte-level BPE never
    emits it, and GGUF loaders set it where the original tokenizer has none. Embedding-matrix
    sizes may differ.
    """
    va, vb = _id_to_token(a), _id_to_token(b)
    shared = set(va) & set(vb)
    common = sorted(shared)
    for i in common:
        if va[i] != vb[i]:
            raise SpecfairError(
                f"tokenizers differ: token id {i} is {va[i]!r} in the {name_a} but {vb[i]!r} in "
                f"the {name_b}; speculative decoding needs identical vocabularies"
            )
    top = common[-1] if common else -1
    for v, name, other in ((va, name_a, name_b), (vb, name_b, name_a)):
        inner = sorted(i for i in v.keys() - shared if i <= top)
        if inner:
            i = inner[0]
            raise SpecfairError(
                f"tokenizers differ: token id {i} is {v[i]!r} in the {name} but missing in the "
                f"{other}"
            )
    for attr in ("bos_token_id", "eos_token_id", "pad_token_id"):
        ia, ib = getattr(a, attr, None), getattr(b, attr, None)
        if ia != ib:
            raise SpecfairError(
                f"tokenizers differ in special tokens: {attr} is {ia!r} in the {name_a} but "
                f"{ib!r} in the {name_b}"
            )
    for t in sorted(set(a.all_special_tokens) | set(b.all_special_tokens)):
        ia, ib = a.convert_tokens_to_ids(t), b.convert_tokens_to_ids(t)
        if ia != ib:
            raise SpecfairError(
                f"tokenizers differ in special token {t!r}: id {ia!r} in the {name_a} but "
                f"{ib!r} in the {name_b}"
            )


TOKENIZER_FILES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.json", "merges.txt", "tokenizer.model",
)  # fmt: skip


def same_tokenizer_files(dir_a, dir_b) -> bool:
    """True when two model directories hold byte-identical tokenizer files (then the full
    comparison, which needs both tokenizers loaded, can be skipped)."""
    from pathlib import Path

    a, b = Path(dir_a), Path(dir_b)
    if not (a.is_dir() and b.is_dir()):
        return False
    names = [n for n in TOKENIZER_FILES if (a / n).is_file() or (b / n).is_file()]
    if "tokenizer.json" not in names:
        return False
    for n in names:
        fa, fb = a / n, b / n
        if not (fa.is_file() and fb.is_file()) or fa.stat().st_size != fb.stat().st_size:
            return False
        if fa.read_bytes() != fb.read_bytes():
            return False
    return True
