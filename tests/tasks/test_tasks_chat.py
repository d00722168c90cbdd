"""encode_prompt on the tiny byte-level tokenizer with a Qwen-style chat template."""

from __future__ import annotations

import pytest
from tiny import make_tokenizer

from specfair.errors import SpecfairError
from specfair.tasks import Prompt, build_messages, encode_prompt


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


def test_single_turn(tok):
    p = Prompt("x-1", "chat", ("Hi!",), None, "s")
    ids = encode_prompt(tok, p)
    assert isinstance(ids, list) and all(type(i) is int for i in ids)
    assert tok.decode(ids) == "<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n"
    assert ids[0] == 257 and ids[-1] == tok("\n")["input_ids"][-1]
    assert encode_prompt(tok, "Hi!") == ids


def test_system_prompt(tok):
    ids = encode_prompt(tok, "Hi", system="Be brief.")
    assert tok.decode(ids) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_multi_turn_with_history(tok):
    p = Prompt("mt-81", "mt_bench", ("Write a poem.", "Now make it shorter."), None, "mt")
    ids = encode_prompt(tok, p, turn=1, history=["Roses are red."])
    want = (
        "<|im_start|>user\nWrite a poem.<|im_end|>\n"
        "<|im_start|>assistant\nRoses are red.<|im_end|>\n"
        "<|im_start|>user\nNow make it shorter.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert tok.decode(ids) == want
    # the model's answer given as token ids (special tokens dropped) gives the same
    answer_ids = tok("Roses are red.")["input_ids"] + [258]
    assert encode_prompt(tok, p, turn=1, history=[answer_ids]) == ids
    # the first turn's encoding is a prefix of the second's
    first = encode_prompt(tok, p, turn=0)
    assert ids[: len(first) - 3] == first[:-3]


def test_bad_turns(tok):
    p = Prompt("mt-81", "mt_bench", ("a", "b"), None, "mt")
    with pytest.raises(SpecfairError, match="no turn 2"):
        encode_prompt(tok, p, turn=2, history=["x", "y"])
    with pytest.raises(SpecfairError, match="earlier answer"):
        encode_prompt(tok, p, turn=1)
    assert [m["role"] for m in build_messages(p, 1, ["x"])] == ["user", "assistant", "user"]
