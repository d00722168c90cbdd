"""Fixtures of the decoding tests: in-memory tiny model pairs where the drafter agrees with the
target only part of the time (the shared ``tiny_pair`` repeats one token greedily, so its drafts
are almost always accepted and would leave the rejection paths untested)."""

from __future__ import annotations

import pytest
import torch
from tiny import tiny_config
from transformers import AutoModelForCausalLM, AutoTokenizer, Qwen2ForCausalLM

EOS, PAD = 258, 256


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Every test here runs with one torch thread (``one_thread`` in tests/conftest.py)."""


def _model(vocab: int, *, seed: int, head_scale: float = 40.0, like=None, noise: float = 0.0):
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        cfg = tiny_config(vocab, layers=2, hidden=64)
        cfg.tie_word_embeddings = False
        cfg.eos_token_id, cfg.pad_token_id, cfg.bos_token_id = EOS, PAD, PAD
        model = Qwen2ForCausalLM(cfg).eval()
        with torch.no_grad():
            if like is None:
                # Sharp logits: greedy ties improbable, temperature-1 entropy around 1 nat.
                model.lm_head.weight.mul_(head_scale)
            else:
                # The drafter: the target's weights plus noise, vocabulary cut to ``vocab``.
                src = like.state_dict()
                for name, w in model.state_dict().items():
                    s = src[name][: w.shape[0]]
                    w.copy_(s + noise * s.std() * torch.randn_like(s) if s.dim() > 1 else s)
    model.generation_config.eos_token_id = EOS
    model.generation_config.pad_token_id = PAD
    return model


@pytest.fixture(scope="session")
def noisy_pair():
    """(target, drafter): vocab 288 / 272, float32; greedy acceptance rate roughly 0.3-0.6."""
    target = _model(288, seed=0)
    drafter = _model(272, seed=1, like=target, noise=0.07)
    return target, drafter


@pytest.fixture(scope="session")
def loaded_pair(tiny_pair):
    """The shared tiny pair loaded from disk, with its tokenizer: (target, drafter, tokenizer)."""
    target_dir, drafter_dir = tiny_pair
    target = AutoModelForCausalLM.from_pretrained(target_dir, dtype=torch.float32).eval()
    drafter = AutoModelForCausalLM.from_pretrained(drafter_dir, dtype=torch.float32).eval()
    return target, drafter, AutoTokenizer.from_pretrained(target_dir)
