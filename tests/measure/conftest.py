import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from specfair.tasks import Prompt


@pytest.fixture(scope="session")
def tiny_models(tiny_pair):
    """(target, drafter, tokenizer), float32, eval mode."""
    t_dir, d_dir = tiny_pair
    torch.manual_seed(0)
    target = AutoModelForCausalLM.from_pretrained(t_dir, dtype=torch.float32).eval()
    drafter = AutoModelForCausalLM.from_pretrained(d_dir, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(t_dir)
    return target, drafter, tok


@pytest.fixture
def tiny_prompts():
    return [
        Prompt(id="c1", task="code", turns=("def add(a, b):",)),
        Prompt(id="m1", task="math", turns=("What is 2+3?",)),
        Prompt(id="w1", task="writing", turns=("Write a haiku.", "Now make it longer.")),
    ]
