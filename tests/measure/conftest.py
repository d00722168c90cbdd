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


@pytest.fixture(scope="session")
def noisy_pair():
    """(target, drafter) that disagree at some greedy positions and agree at others.

    The shared ``tiny_pair`` ties its ×20 embeddings to the output head, so both models just
    repeat the last token and greedy drafts are always accepted. Here the target has an untied
    random head and the drafter is the target with Gaussian noise on every weight.
    """
    import copy
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parents[1]))
    from tiny import make_tokenizer, tiny_config
    from transformers import Qwen2ForCausalLM

    torch.manual_seed(0)
    cfg = tiny_config(288, 2, 32, make_tokenizer())
    cfg.tie_word_embeddings = False
    target = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():
        target.lm_head.weight.mul_(5.0)
    drafter = copy.deepcopy(target)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in drafter.parameters():
            p.add_(0.5 * p.std() * torch.randn(p.shape, generator=g))
    return target, drafter
