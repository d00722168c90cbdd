"""Fixtures for the distill tests: tiny float32 models, a 3-task suite, cached target responses."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from specfair.tasks import Prompt, Suite, split_of

TASKS = ("code", "math", "chat")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is faster than two oversubscribed ones on the shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def load(path):
    return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()


@pytest.fixture(scope="session")
def tok(tiny_pair):
    return AutoTokenizer.from_pretrained(tiny_pair[0])


@pytest.fixture
def models(tiny_pair):
    """Fresh (target, drafter) for each test: training modifies the drafter in place."""
    return load(tiny_pair[0]), load(tiny_pair[1])


def make_suite(per_task: int = 6) -> Suite:
    """Prompts for three tasks; at least ``per_task`` train and 1 test prompt per task."""
    items, i = [], 0
    for task in TASKS:
        n_train = n_test = 0
        while n_train < per_task or n_test < 1:
            p = Prompt(f"{task}-{i}", task, (f"{task} question number {i} please",),
                       reference=f"answer {i}" if i % 2 else None, source="tiny")
            i += 1
            if split_of(p) == "train" and n_train < per_task:
                n_train += 1
                items.append(p)
            elif split_of(p) == "test" and n_test < 2:
                n_test += 1
                items.append(p)
    return Suite("tiny", items)


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
