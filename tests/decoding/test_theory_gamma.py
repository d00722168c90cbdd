import numpy as np
import pytest

from specfair.decoding import (
    CostAwareGamma,
    FixedGamma,
    GammaPolicy,
    HeuristicGamma,
    alpha_from_tau,
    alpha_geometric,
    expected_speedup,
    expected_tokens_per_step,
    optimal_gamma,
)
from specfair.decoding.gamma import as_policy
from specfair.errors import SpecfairError


def test_expected_tokens_per_step():
    assert expected_tokens_per_step(0.0, 5) == 1.0
    assert expected_tokens_per_step(1.0, 5) == 6.0
    assert expected_tokens_per_step(0.5, 2) == pytest.approx(1 + 0.5 + 0.25)
    a = 0.8
    assert expected_tokens_per_step(a, 4) == pytest.approx(sum(a**i for i in range(5)))
    assert expected_tokens_per_step(1 - 1e-12, 3) == pytest.approx(4.0)
    arr = expected_tokens_per_step(np.array([0.0, 0.5, 1.0]), 2)
    assert np.allclose(arr, [1.0, 1.75, 3.0])


def test_expected_speedup_and_optimal_gamma():
    # Leviathan et al., fig. 3: alpha 0.8, c 0.05 -> optimal gamma near 7-8, speed-up ~3.5x.
    assert expected_speedup(0.8, 3, 0.0) == pytest.approx(expected_tokens_per_step(0.8, 3))
    assert expected_speedup(0.5, 1, 1.0) == pytest.approx(1.5 / 2)
    g = optimal_gamma(0.8, 0.05, 20)
    assert 6 <= g <= 9 and expected_speedup(0.8, g, 0.05) > 3.0
    assert optimal_gamma(0.0, 0.1, 10) == 1
    assert optimal_gamma(1.0, 0.1, 10) == 10
    gammas = np.arange(1, 13)
    assert optimal_gamma(0.6, 0.4, 12) == gammas[np.argmax(expected_speedup(0.6, gammas, 0.4))]


def test_alpha_estimators():
    assert alpha_geometric(6, 2) == 0.75 and alpha_geometric(0, 0) == 0.0
    for a in (0.1, 0.5, 0.9):
        assert alpha_from_tau(expected_tokens_per_step(a, 5), 5) == pytest.approx(a, abs=1e-9)
    assert alpha_from_tau(0.5, 3) == 0.0 and alpha_from_tau(9.0, 3) == 1.0


def test_fixed_policy():
    p = FixedGamma(4)
    assert p.next_gamma() == 4 and p.max_gamma == 4
    p.update(4, 0, 0.1, 0.1)
    assert p.next_gamma() == 4
    assert isinstance(p, GammaPolicy) and as_policy(3).next_gamma() == 3
    with pytest.raises(SpecfairError):
        as_policy("five")


def test_heuristic_policy_follows_hf_rule():
    p = HeuristicGamma(start=3, max_gamma=8)
    seq = []
    for accepted_all in (True, True, False, True, False, False, False, False, False):
        g = p.next_gamma()
        p.update(g, g if accepted_all else g - 1, 0.0, 0.0)
        seq.append(p.next_gamma())
    assert seq == [5, 7, 6, 8, 7, 6, 5, 4, 3]
    for _ in range(10):
        p.update(p.next_gamma(), 0, 0.0, 0.0)
    assert p.next_gamma() == 1  # never below 1
    p.reset()
    assert p.next_gamma() == 3


def test_cost_aware_policy_tracks_alpha_and_cost():
    p = CostAwareGamma(c=0.1, alpha_prior=0.5, max_gamma=12)
    assert p.next_gamma() == optimal_gamma(0.5, 0.1, 12)
    for _ in range(30):  # every draft accepted: alpha -> 1, gamma -> max
        g = p.next_gamma()
        p.update(g, g, 0.0, 0.0)
    assert p.alpha > 0.95 and p.next_gamma() >= 10
    for _ in range(60):  # every first draft rejected: alpha -> 0, gamma -> 1
        p.update(p.next_gamma(), 0, 0.0, 0.0)
    assert p.alpha < 0.05 and p.next_gamma() == 1
    p.reset()
    assert p.alpha == 0.5

    # Measured cost: a drafter step as expensive as a target step pushes gamma down.
    m = CostAwareGamma(alpha_prior=0.8, max_gamma=12, c_prior=0.05)
    g0 = m.next_gamma()
    for _ in range(40):
        g = m.next_gamma()
        m.update(g, int(0.8 * g), draft_s=1.0 * g, verify_s=1.0)
    assert m.c == pytest.approx(1.0, abs=0.05) and m.next_gamma() < g0
    for bad in (dict(c=-1.0), dict(alpha_prior=1.5), dict(decay=2.0), dict(max_gamma=0)):
        with pytest.raises(SpecfairError):
            CostAwareGamma(**bad)
