"""The end-of-sequence rule, the one used everywhere (generation, responses, distillation).

A response ends at any id of ``eos_ids(model, tokenizer)``: the model's
``generation_config.eos_token_id`` (an id or a list; Qwen instruct: ``<|im_end|>`` and
``<|endoftext|>``), else the tokenizer's ``eos_token_id``; no id at all when neither says.
"""

from __future__ import annotations

from collections.abc import Sequence


def eos_ids(model, tokenizer=None) -> list[int]:
    """The ids that end a response of ``model`` (see the module docstring)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None and tokenizer is not None:
        eos = getattr(tokenizer, "eos_token_id", None)
    return as_ids(eos)


def as_ids(eos) -> list[int]:
    """An EOS setting (None, an id, a list or a tensor of ids) as a list of ids."""
    if eos is None:
        return []
    if hasattr(eos, "flatten"):  # a tensor
        eos = eos.flatten().tolist()
    return [int(eos)] if isinstance(eos, int) else [int(e) for e in eos]


def strip_eos(ids: Sequence[int], eos: Sequence[int]) -> list[int]:
    """``ids`` without a final end-of-sequence id (an answer as the next turn's history)."""
    return list(ids[:-1]) if len(ids) and ids[-1] in eos else list(ids)


def closing_id(model, tokenizer) -> int:
    """The id that closes a written answer (a reference text): the tokenizer's EOS when it
    ends responses (Qwen instruct: ``<|im_end|>``), else the first end-of-sequence id."""
    eos = eos_ids(model, tokenizer)
    tok_eos = getattr(tokenizer, "eos_token_id", None)
    if tok_eos is not None and (tok_eos in eos or not eos):
        return int(tok_eos)
    return eos[0]
