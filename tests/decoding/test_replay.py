"""Replaying a drafting policy on a teacher-forced pass equals running it (greedy)."""

from __future__ import annotations

import pytest
import torch

from specfair.decoding import speculative_generate
from specfair.decoding.gamma import FixedGamma, HeuristicGamma
from specfair.measure.replay import Policy, replay, replay_all


def _pass(target, drafter, prompt, tokens):
    ids = torch.tensor([prompt + tokens])
    ids = ids.masked_fill(ids >= drafter.get_input_embeddings().num_embeddings, 256)  # its pad
    with torch.no_grad():
        probs = torch.softmax(drafter(input_ids=ids).logits[0].float(), -1)
    top = probs[len(prompt) : len(prompt) + len(tokens) - 1]  # predicting tokens[1:]
    match = [int(a) == t for a, t in zip(top.argmax(-1), tokens[1:], strict=True)]
    return match, top.max(-1).values.tolist()


@pytest.mark.parametrize("policy", [Policy("fixed", 5), Policy("fixed", 2),
                                    Policy("heuristic", 5, max_gamma=32),
                                    Policy("confidence", max_gamma=20, threshold=0.4)])
def test_replay_counts_equal_the_engine(noisy_pair, policy):
    target, drafter = noisy_pair
    for seed in range(3):
        prompt = torch.randint(0, 250, (6,), generator=torch.Generator().manual_seed(seed))
        prompt = prompt.tolist()
        if policy.kind == "fixed":
            kw = {"gamma": FixedGamma(policy.gamma)}
        elif policy.kind == "heuristic":
            kw = {"gamma": HeuristicGamma(policy.gamma, policy.max_gamma)}
        else:
            kw = {"gamma": FixedGamma(policy.max_gamma), "draft_threshold": policy.threshold}
        res = speculative_generate(target, drafter, prompt, max_new_tokens=40,
                                   eos_token_id=[], **kw)
        assert res.stop_reason == "max_tokens"
        r = replay(*_pass(target, drafter, prompt, res.tokens), policy)
        assert (r.steps, r.accepted) == (len(res.steps), res.n_accepted)
        assert list(r.accepted_sizes) == [s.accepted for s in res.steps]
        if policy.kind != "confidence":
            assert list(r.draft_sizes) == [s.drafted for s in res.steps]
        else:  # exact up to each step's first rejected draft (see the module docstring)
            assert [min(k, a + 1) for k, a in zip(r.draft_sizes, r.accepted_sizes, strict=True)] \
                == [min(s.drafted, s.accepted + 1) for s in res.steps]


def test_replay_arithmetic():
    r = replay([True] * 12, [0.9] * 12, Policy("fixed", 5))
    assert (r.steps, r.drafted, r.accepted) == (2, 10, 10)
    assert r.speedup(0.0, 0.0) == pytest.approx(12 / 2)
    assert r.speedup(0.5, 0.0) == pytest.approx(12 / (2 + 10 * 0.5))
    none = replay([False] * 6, [0.1] * 6, Policy("confidence", max_gamma=20, threshold=0.4))
    assert none.draft_sizes == (1, 1, 1, 1, 1, 0) and none.accepted == 0
    out = replay_all([([True] * 12, [0.9] * 12)], Policy("fixed", 5), 0.0, 0.0)
    assert out["alpha"] == 1.0 and out["speedup"] == pytest.approx(6.0)
