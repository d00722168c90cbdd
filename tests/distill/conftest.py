"""Fixtures for the distill tests: tiny float32 models, a 3-task suite, cached target responses."""

from __future__ import annotations

import pytest
from distill_helpers import load, make_suite
from transformers import AutoTokenizer


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one torch thread (``one_thread`` in tests/conftest.py)."""


@pytest.fixture(scope="session")
def tok(tiny_pair):
    return AutoTokenizer.from_pretrained(tiny_pair[0])


@pytest.fixture(scope="session")
def suite():
    return make_suite()


@pytest.fixture(scope="session")
def examples(tiny_pair, tok, suite, tmp_path_factory):
    """Target responses (8 tokens) to the TRAIN prompts, via the distill data path."""
    from specfair.distill.data import target_response_examples

    target, drafter = load(tiny_pair[0]), load(tiny_pair[1])
    cache = tmp_path_factory.mktemp("responses") / "responses.jsonl"
    return target_response_examples(suite.prompts("train"), target, drafter, tok, cache,
                                    max_new_tokens=8)
