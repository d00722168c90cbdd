"""The verification rule reproduces the target's distribution (Leviathan et al. 2023, thm 1)."""

import itertools
from functools import cache

import pytest
import torch
from scipy import stats

from specfair.decoding import (
    acceptance_probs,
    greedy_verify,
    next_token_distribution,
    rejection_sample,
    residual_distribution,
)

V = 4


def _dist(seed: int, zero: int | None) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(V, generator=g, dtype=torch.float64) * 1.5
    if zero is not None:
        logits[zero] = float("-inf")  # e.g. a token beyond the drafter's vocabulary, or top-k
    return logits.softmax(-1)


def _seed(salt: int, ctx: tuple[int, ...]) -> int:
    h = salt
    for t in ctx:
        h = (h * 31 + t + 1) % 2**31
    return h * 7 + len(ctx)


@cache
def P(ctx: tuple[int, ...]) -> torch.Tensor:
    """A context-dependent 'target' over V tokens (token 0 impossible after a 2)."""
    return _dist(_seed(1, ctx), 0 if ctx and ctx[-1] == 2 else None)


@cache
def Q(ctx: tuple[int, ...]) -> torch.Tensor:
    """A context-dependent 'drafter' that never proposes token 3 (a smaller vocabulary)."""
    return _dist(_seed(2, ctx), 3)


@cache
def block(ctx: tuple[int, ...], gamma: int) -> dict[tuple[int, ...], float]:
    """Exact law of the tokens one speculative step emits from ``ctx``, built from the library's
    vectorised acceptance_probs / next_token_distribution, one row per draft sequence
    x_1..x_gamma (x_i ~ Q, scored by P)."""
    rows = list(itertools.product(range(V), repeat=gamma))
    drafts = torch.tensor(rows)
    q = torch.stack([torch.stack([Q(ctx + r[:i]) for i in range(gamma)]) for r in rows])
    p = torch.stack([torch.stack([P(ctx + r[:i]) for i in range(gamma + 1)]) for r in rows])
    p_drafts = q.gather(-1, drafts.unsqueeze(-1)).squeeze(-1).prod(-1)  # [B]
    a = acceptance_probs(drafts, q, p)  # [B, gamma]
    reach = torch.cat([torch.ones(len(rows), 1, dtype=a.dtype), a.cumprod(-1)], -1)
    stop = torch.cat([1 - a, torch.ones(len(rows), 1, dtype=a.dtype)], -1)
    out: dict[tuple[int, ...], float] = {}
    for n in range(gamma + 1):
        weight = (p_drafts * reach[:, n] * stop[:, n]).tolist()  # P(drafts, n accepted)
        nxt = next_token_distribution(torch.full((len(rows),), n), q, p).tolist()
        for r, w, dist in zip(rows, weight, nxt, strict=True):
            if w == 0:
                continue
            for y in range(V):
                key = r[:n] + (y,)
                out[key] = out.get(key, 0.0) + w * dist[y]
    return out


def sd_law(ctx: tuple[int, ...], length: int, gamma: int) -> dict[tuple[int, ...], float]:
    """Exact law of the first ``length`` tokens speculative decoding emits (steps chained)."""
    law: dict[tuple[int, ...], float] = {}
    for emitted, prob in block(ctx, gamma).items():
        if len(emitted) >= length:
            key = emitted[:length]
            law[key] = law.get(key, 0.0) + prob
        else:
            for rest, p_rest in sd_law(ctx + emitted, length - len(emitted), gamma).items():
                law[emitted + rest] = law.get(emitted + rest, 0.0) + prob * p_rest
    return law


@pytest.mark.parametrize("gamma", [1, 2, 3])
def test_speculative_law_equals_target_law(gamma):
    """Over all V^L sequences, P_SD(y_1..y_L) = prod_i P(y_i | y_<i) to 1e-6 (L = gamma + 1, so
    blocks with every draft accepted and a bonus token, and chains of short blocks, count)."""
    length = gamma + 1
    law = sd_law((), length, gamma)
    assert abs(sum(law.values()) - 1.0) < 1e-9
    for seq in itertools.product(range(V), repeat=length):
        exact = 1.0
        for i, y in enumerate(seq):
            exact *= P(seq[:i])[y].item()
        assert abs(law.get(seq, 0.0) - exact) < 1e-6, (seq, law.get(seq), exact)


def test_single_position_formula():
    """P(out = x) = q(x) min(1, p(x)/q(x))
    + (1 - sum_y q(y) min(1, p(y)/q(y))) norm(max(0, p - q))(x) = p(x)."""
    for seed in range(20):
        g = torch.Generator().manual_seed(seed)
        p = torch.randn(7, generator=g, dtype=torch.float64).mul(2).softmax(-1)
        q = torch.randn(7, generator=g, dtype=torch.float64).mul(2).softmax(-1)
        q[seed % 7] = 0.0
        q = q / q.sum()
        a = acceptance_probs(torch.arange(7)[None], q.expand(1, 7, 7), p.expand(1, 8, 7))[0]
        accepted = q * a
        out = accepted + (1 - accepted.sum()) * residual_distribution(p, q)
        assert torch.allclose(out, p, atol=1e-12)


def test_empirical_vectorised_sampler():
    """200k independent rows through ``rejection_sample`` (gamma = 3, context-free p_i, q_i):
    the first emitted token ~ p_0, the second (given the first draft was accepted) ~ p_1, and
    the number of accepted drafts has its exact law. Chi-square tests at alpha = 0.001 each (a
    correct sampler fails one of the three with probability < 0.3%; the seed is fixed)."""
    gamma, v, b = 3, 6, 200_000
    g = torch.Generator().manual_seed(0)
    p = torch.randn(gamma + 1, v, generator=g).mul(1.5).softmax(-1)
    q = torch.randn(gamma, v, generator=g).mul(1.5)
    q[:, -1] = float("-inf")  # the drafter's vocabulary is one token shorter
    q = q.softmax(-1)
    drafts = torch.multinomial(q, b, replacement=True, generator=g).T  # [b, gamma]
    n, nxt = rejection_sample(drafts, q.expand(b, -1, -1), p.expand(b, -1, -1), g)
    assert n.shape == (b,) and nxt.shape == (b,) and n.max() <= gamma

    first = torch.where(n >= 1, drafts[:, 0], nxt)
    assert _chi2_pvalue(first, p[0]) > 1e-3
    m = n >= 1
    second = torch.where(n[m] >= 2, drafts[m, 1], nxt[m])
    assert _chi2_pvalue(second, p[1]) > 1e-3
    beta = torch.minimum(p[:gamma], q).sum(-1).double()  # acceptance probability per position
    reach = torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(beta, 0)])  # P(n >= k)
    assert _chi2_pvalue(n, torch.cat([reach[:-1] - reach[1:], reach[-1:]])) > 1e-3


def _chi2_pvalue(samples: torch.Tensor, probs: torch.Tensor) -> float:
    """Goodness of fit of integer samples to ``probs`` (bins of zero probability must be empty)."""
    probs = probs.double() / probs.double().sum()
    observed = torch.bincount(samples, minlength=probs.numel()).double()
    assert observed[probs == 0].sum() == 0
    keep = probs > 0
    return stats.chisquare(observed[keep].numpy(), (probs[keep] * samples.numel()).numpy()).pvalue


def test_seeded_rejection_sample_is_reproducible():
    p = torch.rand(5, 4, 9).softmax(-1)
    q = torch.rand(5, 3, 9).softmax(-1)
    drafts = torch.randint(0, 9, (5, 3))
    a = rejection_sample(drafts, q, p, torch.Generator().manual_seed(7))
    b = rejection_sample(drafts, q, p, torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def test_greedy_verify():
    drafts = torch.tensor([[5, 6, 7], [5, 6, 7], [1, 6, 7], [5, 9, 7]])
    target = torch.tensor([[5, 6, 7, 8], [5, 6, 3, 8], [5, 6, 7, 8], [5, 6, 7, 8]])
    n, nxt = greedy_verify(drafts, target)
    assert n.tolist() == [3, 2, 0, 1]
    assert nxt.tolist() == [8, 3, 5, 6]


def test_one_hot_rejection_sampling_is_greedy_verification():
    drafts = torch.tensor([[5, 6, 7], [5, 6, 7], [1, 6, 7]])
    target = torch.tensor([[5, 6, 7, 8], [5, 6, 3, 8], [5, 6, 7, 8]])
    p = torch.nn.functional.one_hot(target, 10).float()
    q = torch.nn.functional.one_hot(drafts, 10).float()
    n, nxt = rejection_sample(drafts, q, p, torch.Generator().manual_seed(0))
    n_ref, nxt_ref = greedy_verify(drafts, target)
    assert torch.equal(n, n_ref) and torch.equal(nxt, nxt_ref)
