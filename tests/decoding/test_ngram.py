"""Prompt-lookup drafts (``proposer="ngram"``) and the hybrid proposer: the matcher, greedy
equality with the autoregressive decoder, and the sampled output distribution (one-hot q)."""

import pytest
import torch
from test_distribution import ALPHA, N, exact_marginals, gof_pvalue

from specfair.decoding import (
    CostAwareGamma,
    HeuristicGamma,
    autoregressive_generate,
    speculative_generate,
)
from specfair.decoding.ngram import NgramProposer, ngram_match, parse_proposer
from specfair.errors import SpecfairError


def match(ctx, k, size=3):
    return ngram_match(torch.tensor(ctx), k, size).tolist()


def test_ngram_match_prefers_the_longest_suffix_and_its_first_occurrence():
    # suffix [1, 2, 3] occurs at 0 (followed by 9, 9); [2, 3] alone would match at 5 (then 7)
    assert match([1, 2, 3, 9, 9, 2, 3, 7, 1, 2, 3], 2) == [9, 9]
    assert match([5, 2, 3, 7, 2, 3, 8, 2, 3], 4) == [7, 2, 3, 8]  # first occurrence of [2, 3]
    assert match([4, 6, 1, 4], 3) == [6, 1, 4]  # size 1: the tokens after the earlier 4
    assert match([4, 6, 1, 4], 3, size=1) == [6, 1, 4]


def test_ngram_match_stops_at_the_context_end_and_the_budget():
    assert match([1, 2, 1], 5) == [2, 1]  # what followed reaches the end of the context
    assert match([7, 7, 7, 7], 1) == [7]
    assert match([1, 2, 3, 1, 2, 3], 0) == []


def test_ngram_match_without_an_earlier_occurrence_is_empty():
    assert match([1, 2, 3, 4], 3) == []
    assert match([5], 3) == []  # one token: nothing before it
    assert match([1, 2, 3, 4, 5, 1], 3, size=0) == []


def test_ngram_proposer_q_is_one_hot_on_its_drafts():
    prop = NgramProposer(vocab=10, max_g=4, greedy=False, device=torch.device("cpu"))
    buf = torch.tensor([[3, 4, 5, 3, 0, 0, 0, 0]])
    assert prop.propose(buf, 4, 3, room=3) == 3  # [3] occurs at 0, followed by 4, 5, 3
    assert buf[0, 4:7].tolist() == [4, 5, 3]
    q = prop.draft_probs(3)
    assert q.shape == (1, 3, 10) and q.sum(-1).eq(1).all()
    assert q[0].argmax(-1).tolist() == [4, 5, 3]
    assert prop.propose(torch.tensor([[1, 2, 0, 0]]), 2, 2, room=2) == 0


def test_ngram_proposer_with_its_own_length_ignores_the_policys_gamma():
    prop = NgramProposer(vocab=10, max_g=6, greedy=True, device=torch.device("cpu"), tokens=4)
    buf = torch.tensor([[3, 4, 5, 6, 7, 3, 0, 0, 0, 0, 0]])
    assert prop.propose(buf, 6, 1, room=5) == 4  # γ says 1, the lookup copies its 4
    assert buf[0, 6:10].tolist() == [4, 5, 6, 7]
    assert prop.propose(buf, 6, 1, room=2) == 2  # but never more than the room


def test_parse_proposer():
    assert parse_proposer("model") == ("model", None)
    assert parse_proposer("hybrid") == ("hybrid", None)
    assert parse_proposer("ngram:10") == ("ngram", 10)
    assert parse_proposer(" hybrid:3 ") == ("hybrid", 3)
    for bad in ("lookup", "model:3", "hybrid:0", "hybrid:", "ngram:x", "hybrid:-2"):
        with pytest.raises(SpecfairError, match="proposer"):
            parse_proposer(bad)


# prompts with repetitions, so that the n-gram lookup matches often
REPEATS = [
    [40, 101, 7, 220, 33, 58] * 3,
    [5, 9, 5, 9, 5, 9, 11, 12, 13, 5, 9],
    [100, 3, 100, 4, 100, 5, 100],
    [77],
]


@pytest.fixture(scope="module")
def repeat_prompts(noisy_pair):
    """REPEATS plus prompts that contain the target's own greedy continuation (so the matched
    drafts are often accepted: both outcomes of verification are exercised)."""
    target, _ = noisy_pair
    out = list(REPEATS)
    for p in REPEATS[:2]:
        cont = autoregressive_generate(target, p, max_new_tokens=12).tokens
        out.append(p + cont + p)
    return out


@pytest.mark.parametrize("kind", ["ngram", "hybrid", "ngram:7", "hybrid:7"])
@pytest.mark.parametrize("gamma", [3, 6, "heuristic", "adaptive"])
def test_greedy_ngram_and_hybrid_equal_autoregressive(noisy_pair, repeat_prompts, kind, gamma):
    target, drafter = noisy_pair
    steps = []
    for prompt in repeat_prompts:
        ref = autoregressive_generate(target, prompt, max_new_tokens=32)
        g = {"heuristic": HeuristicGamma(start=3, max_gamma=8),
             "adaptive": CostAwareGamma(max_gamma=8)}.get(gamma, gamma)
        res = speculative_generate(target, drafter if "hybrid" in kind else None, prompt,
                                   max_new_tokens=32, gamma=g, proposer=kind)  # fmt: skip
        assert res.tokens == ref.tokens, prompt
        assert sum(s.accepted_len for s in res.steps) == len(res.tokens) - 1
        steps += res.steps
    used = {s.proposer for s in steps if s.drafted}
    assert used == ({"ngram"} if kind.startswith("ngram") else {"ngram", "model"})
    assert any(s.drafted and s.accepted == s.drafted for s in steps)  # a fully accepted block
    assert any(s.accepted < s.drafted for s in steps)  # a rejection
    if kind.startswith("ngram"):  # no match: a plain target step
        assert any(s.drafted == 0 and s.proposer == "" for s in steps)


class _Spy(CostAwareGamma):
    """Remembers the steps it was told about."""

    def reset(self):
        super().reset()
        self.told = []

    def update(self, gamma, accepted, draft_s, verify_s):
        self.told.append(gamma)
        super().update(gamma, accepted, draft_s, verify_s)


def test_with_a_lookup_length_the_policy_sizes_and_learns_from_the_drafters_steps_only(
        noisy_pair, repeat_prompts):  # fmt: skip
    target, drafter = noisy_pair
    prompt = repeat_prompts[-1]
    spy = _Spy(max_gamma=2)
    res = speculative_generate(target, drafter, prompt, max_new_tokens=32, gamma=spy,
                               proposer="hybrid:9")  # fmt: skip
    lookup = [s.drafted for s in res.steps if s.proposer == "ngram"]
    model = [s.drafted for s in res.steps if s.proposer == "model"]
    assert lookup and model and max(lookup) > 2 >= max(model)  # lookup steps exceed γ's bound
    assert spy.told == model  # told of the drafter's steps, not of the lookups
    spy2 = _Spy(max_gamma=2)  # without a length: the policy bounds and hears every step
    res2 = speculative_generate(target, drafter, prompt, max_new_tokens=32, gamma=spy2,
                                proposer="hybrid")  # fmt: skip
    assert max(s.drafted for s in res2.steps) <= 2
    assert spy2.told == [s.drafted for s in res2.steps if s.drafted]


def test_by_proposer_counts_the_steps_of_each(noisy_pair, repeat_prompts):
    target, drafter = noisy_pair
    res = speculative_generate(target, drafter, repeat_prompts[-1], max_new_tokens=32,
                               gamma=4, proposer="hybrid")  # fmt: skip
    by = res.by_proposer()
    assert sum(d["steps"] for d in by.values()) == sum(1 for s in res.steps if s.drafted)
    assert sum(d["accepted"] for d in by.values()) == res.n_accepted


def test_proposer_errors(noisy_pair):
    target, drafter = noisy_pair
    with pytest.raises(SpecfairError, match="proposer must be one of"):
        speculative_generate(target, drafter, [1, 2], max_new_tokens=4, proposer="lookup")
    with pytest.raises(SpecfairError, match="needs a drafter"):
        speculative_generate(target, None, [1, 2], max_new_tokens=4, proposer="hybrid")
    with pytest.raises(SpecfairError, match="needs a drafter"):
        speculative_generate(target, None, [1, 2], max_new_tokens=4, proposer="hybrid:5")


@pytest.mark.parametrize("proposer", ["ngram", "ngram:3"])
def test_sampled_ngram_has_target_distribution(noisy_pair, repeat_prompts, proposer):
    """Sampling with deterministic drafts (q one-hot): the first 4 tokens of N seeded runs
    against their exact marginals (chi-square at ALPHA, as in test_distribution.py)."""
    target, _ = noisy_pair
    prompt = repeat_prompts[-2]
    kw = dict(max_new_tokens=4, temperature=1.0, gamma=2, proposer=proposer)
    runs = [speculative_generate(target, None, prompt, seed=s, **kw) for s in range(N)]
    steps = [s for r in runs for s in r.steps if s.drafted]
    assert len(steps) > N // 2
    assert any(s.accepted == s.drafted for s in steps)
    assert any(s.accepted < s.drafted for s in steps)
    marginals = exact_marginals(target, prompt, 4, {})
    for pos in range(4):
        p = gof_pvalue([r.tokens[pos] for r in runs], marginals[pos])
        assert p > ALPHA, (pos, p)
