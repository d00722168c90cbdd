"""The hash split: pinned values, determinism across processes, the overlap check."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest

from specfair.errors import SpecfairError
from specfair.tasks import Prompt, check_no_overlap, normalize_text, split_key, split_of


def P(pid, text, task="t", group=None, turns=None):
    return Prompt(pid, task, tuple(turns or (text,)), None, "s", group)


def test_normalize_text():
    assert normalize_text("  Hello,\n\tWORLD!  ") == "hello world"
    assert normalize_text("Janet’s ducks") == normalize_text("Janet's  ducks")
    assert normalize_text("ｆｕｌｌ　ｗｉｄｔｈ") == "full width"  # NFKC
    assert normalize_text("日本語、です。") == "日本語 です"


def test_pinned_hash_values():
    # sha256("hello world"): the split key must never change, or published splits move.
    expected = "b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
    assert hashlib.sha256(b"hello world").hexdigest() == expected
    assert split_key("Hello,   World!") == expected
    assert split_key(P("x", "hello world")) == expected
    assert split_of("hello world") == "train"  # 0xb94d27b9934d3e08 / 2**64 = 0.724...
    assert split_of("hello world", test_fraction=0.75) == "test"
    assert split_of("hello world", test_fraction=0.0) == "train"
    assert split_of("hello world", test_fraction=1.0) == "test"
    with pytest.raises(SpecfairError):
        split_of("x", test_fraction=1.5)


def test_split_keyed_on_first_turn_or_group():
    a = P("a", "Same question?", turns=("Same question?", "follow-up one"))
    b = P("b", "same   QUESTION", turns=("same   QUESTION", "another follow-up"))
    assert split_key(a) == split_key(b)
    g = P("g", "Une question traduite ?", group="hello world")
    assert split_key(g) == split_key("hello world")


def test_split_fraction_roughly_right():
    texts = [f"prompt number {i}" for i in range(4000)]
    share = sum(split_of(t) == "test" for t in texts) / len(texts)
    assert 0.27 < share < 0.33


def test_split_same_in_another_process():
    texts = [f"question {i}: what is {i} + {i}?" for i in range(200)] + ["日本の首都は？"]
    here = [split_of(t) for t in texts]
    code = (
        "import json, sys; from specfair.tasks import split_of; "
        "print(json.dumps([split_of(t) for t in json.loads(sys.stdin.read())]))"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        env=env,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout) == here


def test_check_no_overlap_passes_and_fails():
    train = [P("a", "What is the capital of France?"), P("b", "Write a poem.")]
    test = [P("c", "Name a prime number.")]
    check_no_overlap(train, test)
    with pytest.raises(SpecfairError, match="'d'.*'a'"):
        check_no_overlap(train, [P("d", "  what is the CAPITAL of france ")])
    # a later turn that repeats a train prompt counts too
    with pytest.raises(SpecfairError, match="overlap"):
        check_no_overlap(train, [P("e", "Hi", turns=("Hi", "Write a poem!"))])
    with pytest.raises(SpecfairError, match="id 'a' is in both"):
        check_no_overlap(train, [P("a", "Something else entirely")])


def test_check_no_overlap_groups():
    # an MGSM translation in train whose English original (a GSM8K prompt) is in test
    gsm = P("gsm8k-0", "Janet's ducks lay 16 eggs per day.")
    ja = P(
        "mgsm_ja-0",
        "ジャネットのアヒルは1日に16個の卵を生みます。",
        group="Janet’s ducks lay 16 eggs per day.",
    )
    zh = P("mgsm_zh-0", "珍妮特的鸭子每天下16颗蛋。", group="Janet’s ducks lay 16 eggs per day.")
    with pytest.raises(SpecfairError, match="split group"):
        check_no_overlap([ja], [gsm])
    with pytest.raises(SpecfairError, match="split group"):
        check_no_overlap([gsm], [ja])
    with pytest.raises(SpecfairError, match="split group"):
        check_no_overlap([zh], [ja])
    # and the split itself never separates them
    assert split_of(ja) == split_of(zh) == split_of(gsm)


def test_find_leaks_catches_a_text_quoted_as_a_paragraph():
    from specfair.tasks.split import find_leaks

    answer = "The mitochondria is the powerhouse of the cell.\n\nIt makes ATP for the cell."
    train = {"chat-1": ("Tell me about cells, please.", answer),  # prompt + training text
             "chat-2": ("Tell me about dogs, please.", "Dogs are loyal animals, people say.")}
    test = {"sum-9": (f"Summarize the following text in three sentences.\n\n{answer}",)}
    assert find_leaks(train, test) == {"chat-1": "sum-9"}
    # one paragraph of it is enough; case, punctuation and wrapping do not hide it
    test = {"sum-9": ("Summarize this.\n\nit makes ATP,   for the CELL",)}
    assert find_leaks(train, test) == {"chat-1": "sum-9"}
    # a short shared paragraph ("Sure!") is no source
    assert find_leaks({"a": ("Sure!\n\nCats purr when they are content and safe.",)},
                      {"b": ("Sure!\n\nDogs bark when they are bored or scared.",)}) == {}


def test_find_leaks_ignores_templates_that_many_items_repeat():
    from specfair.tasks.split import LEAK_TEMPLATE_ITEMS, find_leaks

    head = "Summarize the following text in three sentences."
    train = {f"tr{i}": (f"{head}\n\nTraining passage number {i} about the weather.",)
             for i in range(LEAK_TEMPLATE_ITEMS)}
    test = {"te": (f"{head}\n\nA test passage about something else entirely.",)}
    assert find_leaks(train, test) == {}  # the instruction is in 6 items: a template
    few = dict(list(train.items())[:2])
    assert find_leaks(few, test) == {"tr0": "te", "tr1": "te"}  # in 3 items: compared
