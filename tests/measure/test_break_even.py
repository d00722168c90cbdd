"""The break-even acceptance of the replay's cost model: speed-up 1 there, by the formula and
by replaying random acceptances; higher for a dearer drafter or verification."""

from __future__ import annotations

import numpy as np
import pytest

from specfair.decoding.theory import expected_speedup, expected_tokens_per_step
from specfair.measure.replay import Policy, break_even_alpha, replay, step_cost


@pytest.mark.parametrize("gamma, c, slope", [(5, 0.4, 0.3), (5, 0.1, 0.0), (3, 0.25, 0.5),
                                             (8, 0.05, 0.1), (1, 0.3, 0.2)])
def test_speedup_is_one_at_the_break_even_alpha(gamma, c, slope):
    a = break_even_alpha(gamma, c, slope)
    assert 0 < a < 1
    assert expected_tokens_per_step(a, gamma) / step_cost(gamma, c, slope) == pytest.approx(1)
    if slope == 0:  # Leviathan et al.'s speed-up, the other owner of the formula
        assert expected_speedup(a, gamma, c) == pytest.approx(1)


def test_replaying_acceptances_at_the_break_even_alpha_breaks_even():
    gamma, c, slope = 5, 0.3, 0.2
    a = break_even_alpha(gamma, c, slope)
    match = (np.random.default_rng(0).random(200_000) < a).tolist()
    r = replay(match, [1.0] * len(match), Policy("fixed", gamma))
    assert r.speedup(c, slope) == pytest.approx(1, abs=0.01)
    lo = r.speedup(c + 0.1, slope)
    assert lo < 0.97  # a dearer drafter at the same acceptance is slower than plain decoding


def test_break_even_alpha_rises_with_the_costs():
    cs = np.linspace(0.0, 0.8, 9)
    by_c = [break_even_alpha(5, c, 0.1) for c in cs]
    assert all(x < y for x, y in zip(by_c, by_c[1:], strict=False))
    by_slope = [break_even_alpha(5, 0.2, s) for s in cs[:8]]
    assert all(x < y for x, y in zip(by_slope, by_slope[1:], strict=False))


def test_break_even_alpha_at_the_ends():
    assert break_even_alpha(5, 0.0, 0.0) == 0.0  # a free drafter pays from any acceptance
    assert break_even_alpha(5, 1.0, 0.0) == pytest.approx(1.0)  # a step costs gamma + 1 tokens
    assert break_even_alpha(5, 1.2, 0.0) is None  # costs more than every draft accepted yields
    assert break_even_alpha(5, 0.5, 0.6) is None
