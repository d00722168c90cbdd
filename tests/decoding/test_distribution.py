"""End to end: sampled speculative decoding has the target's output distribution.

Temperature 1 (and top-k / top-p, applied to both models), a fixed prompt, max_new_tokens = 4 and
gamma = 2, so that the 2nd to 4th tokens come from draft blocks (accepted drafts, corrections
after a rejection, bonus tokens); the 1st token comes from the target's prefill in both decoders.

- One-sample tests: the 1st to 4th tokens of N seeded SD runs against their exact marginals
  under the target (sum over the earlier tokens, by batched forwards).
- Conditional test: the rank of each SD token under the target's distribution given its own
  prefix, against the exact expected rank-class counts.
- Two-sample test: the same tokens of N seeded SD runs against N seeded AR runs.

Every chi-square test runs at alpha = 0.001; with 13 tests in this file a correct decoder
fails one with probability < 1.3% over random seeds (the seeds are fixed, so the outcome is
deterministic). Bins with an expected count < 5 are pooled.

These are integration checks (which rows of p and q are compared, cache alignment, seeding): a
position mix-up in q fails them with p < 1e-5, but with N = 200 they cannot see a subtle error
in the residual distribution; test_rejection.py checks the rule itself exactly.
"""

import numpy as np
import pytest
import torch
from scipy import stats

from specfair.decoding import autoregressive_generate, logits_to_probs, speculative_generate

N = 200
PROMPT = [40, 101, 7, 220, 33, 58]
ALPHA = 1e-3


def exact_marginals(
    target, prompt, length, sampling, temperature=1.0, prune=1e-6
) -> list[np.ndarray]:
    """Marginal distribution of each of the first ``length`` sampled tokens (prefixes whose
    probability is below ``prune`` are dropped; the lost mass is checked to be < 1e-3)."""
    prefixes, weights, marginals = [[]], torch.ones(1, dtype=torch.float64), []
    with torch.inference_mode():
        for _ in range(length):
            batch = torch.tensor([prompt + p for p in prefixes])
            probs = logits_to_probs(target(batch).logits[:, -1], temperature, **sampling).double()
            joint = weights.unsqueeze(1) * probs  # [prefixes, V]
            marginals.append(joint.sum(0).numpy())
            assert marginals[-1].sum() > 1 - 1e-3
            keep = (joint > prune).nonzero().tolist()
            prefixes = [prefixes[i] + [t] for i, t in keep]
            weights = joint[joint > prune]
    return marginals


def gof_pvalue(samples: list[int], probs: np.ndarray) -> float:
    counts = np.bincount(samples, minlength=probs.size)
    assert counts[probs == 0].sum() == 0  # never a token the target cannot produce
    counts, expected = counts[probs > 0], probs[probs > 0] * len(samples)
    small = expected < 5
    if small.any():
        counts = np.append(counts[~small], counts[small].sum())
        expected = np.append(expected[~small], expected[small].sum())
    return stats.chisquare(counts, expected * counts.sum() / expected.sum()).pvalue


RANK_CLASSES = [(0, 1), (1, 2), (2, 3), (3, 6), (6, None)]


def conditional_rank_pvalue(target, runs, positions, sampling, temperature=1.0) -> float:
    """Each sampled token against the target's distribution given its own prefix: the rank of
    the token under that distribution (classes 0, 1, 2, 3-5, 6+) is compared with its exact
    expected class counts (sums of per-sample class probabilities). For independent, not
    identically distributed trials the chi-square statistic is conservative."""
    observed = np.zeros(len(RANK_CLASSES))
    expected = np.zeros(len(RANK_CLASSES))
    with torch.inference_mode():
        for pos in positions:
            batch = torch.tensor([PROMPT + r.tokens[:pos] for r in runs])
            logits = target(batch).logits[:, -1]
            probs = logits_to_probs(logits, temperature, **sampling).double()
            order = probs.argsort(dim=-1, descending=True, stable=True)
            sorted_p = probs.gather(-1, order)
            sampled = torch.tensor([r.tokens[pos] for r in runs]).unsqueeze(1)
            rank = (order == sampled).int().argmax(-1)
            for k, (lo, hi) in enumerate(RANK_CLASSES):
                observed[k] += ((rank >= lo) & (rank < (hi or probs.shape[-1]))).sum().item()
                expected[k] += sorted_p[:, lo:hi].sum().item()
    return stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue


def two_sample_pvalue(a: list[int], b: list[int], vocab: int) -> float:
    table = np.stack([np.bincount(a, minlength=vocab), np.bincount(b, minlength=vocab)])
    table = table[:, table.sum(0) > 0]
    small = table.sum(0) < 10  # expected count < 5 in each row
    if small.any():
        table = np.concatenate([table[:, ~small], table[:, small].sum(1, keepdims=True)], 1)
    return stats.chi2_contingency(table).pvalue if table.shape[1] > 1 else 1.0


@pytest.fixture(scope="module")
def sd_runs(noisy_pair):
    """N seeded SD runs per sampling setting, shared by the tests below."""
    target, drafter = noisy_pair
    runs = {}

    def get(top_k=0, top_p=1.0):
        if (top_k, top_p) not in runs:
            kw = dict(max_new_tokens=4, temperature=1.0, top_k=top_k, top_p=top_p, gamma=2)
            runs[top_k, top_p] = [
                speculative_generate(target, drafter, PROMPT, seed=s, **kw) for s in range(N)
            ]
        return runs[top_k, top_p]

    return get


@pytest.mark.parametrize("sampling", [dict(), dict(top_k=20, top_p=0.9)])
def test_sampled_speculative_has_target_distribution(noisy_pair, sd_runs, sampling):
    target, _ = noisy_pair
    sd = sd_runs(**sampling)
    assert all(len(r.tokens) == 4 for r in sd)  # no EOS with this prompt
    steps = [s for r in sd for s in r.steps]
    assert any(s.accepted < s.gamma for s in steps)  # rejections (correction tokens)
    assert any(s.accepted == s.gamma == 2 for s in steps)  # full blocks (bonus tokens)
    marginals = exact_marginals(target, PROMPT, 4, sampling)
    for pos in range(4):
        p = gof_pvalue([r.tokens[pos] for r in sd], marginals[pos])
        assert p > ALPHA, (pos, p)
    assert conditional_rank_pvalue(target, sd, (1, 2, 3), sampling) > ALPHA


def test_sampled_speculative_matches_sampled_autoregressive(noisy_pair, sd_runs):
    target, _ = noisy_pair
    sd = sd_runs()
    kw = dict(max_new_tokens=4, temperature=1.0)
    ar = [autoregressive_generate(target, PROMPT, seed=10_000 + s, **kw) for s in range(N)]
    vocab = target.config.vocab_size
    for pos in (1, 2, 3):
        p = two_sample_pvalue([r.tokens[pos] for r in sd], [r.tokens[pos] for r in ar], vocab)
        assert p > ALPHA, (pos, p)


def test_sampled_speculative_with_draft_threshold_has_target_distribution(noisy_pair):
    """Early-stopped drafts (drafter confidence < 0.3) keep the target's distribution
    (one more chi-square test at ALPHA)."""
    target, drafter = noisy_pair
    kw = dict(max_new_tokens=4, temperature=1.0, gamma=3, draft_threshold=0.3)
    sd = [speculative_generate(target, drafter, PROMPT, seed=s, **kw) for s in range(N)]
    assert any(0 < s.gamma < 3 for r in sd for s in r.steps[:-1])
    marginals = exact_marginals(target, PROMPT, 4, {})
    for pos in range(4):
        p = gof_pvalue([r.tokens[pos] for r in sd], marginals[pos])
        assert p > ALPHA, (pos, p)
