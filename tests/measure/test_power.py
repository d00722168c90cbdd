"""The smallest detectable paired effect (measure.power) against a hand computation."""

import math

import pytest

from specfair.measure.power import mde, mde_of_sd, n_needed, sd, z_sum


def test_z_sum_is_the_two_normal_quantiles():
    # z_0.975 = 1.959964, z_0.80 = 0.841621 (normal tables)
    assert z_sum() == pytest.approx(1.959964 + 0.841621, abs=1e-5)
    assert z_sum(0.9, 0.9) == pytest.approx(1.644854 + 1.281552, abs=1e-5)
    with pytest.raises(ValueError):
        z_sum(1.0, 0.8)


def test_mde_by_hand():
    # diffs 0.1, -0.1, 0.3, 0.1: mean 0.1, squared deviations 0 + 0.04 + 0.04 + 0 = 0.08,
    # variance 0.08 / 3, sd 0.163299; MDE = 2.801585 * 0.163299 / sqrt(4) = 0.228749
    out = mde([0.1, -0.1, 0.3, 0.1])
    assert out["n"] == 4
    assert out["sd"] == pytest.approx(math.sqrt(0.08 / 3), rel=1e-9)
    assert out["mde"] == pytest.approx(0.228749, abs=1e-6)
    # constant differences: nothing varies, any effect is detectable
    assert mde([0.2] * 5)["mde"] == 0.0
    # fewer than two pairs: no spread, no MDE
    assert mde([0.3]) == {"n": 1, "sd": None, "mde": None} and sd([]) is None
    assert mde_of_sd(None, 10) is None and mde_of_sd(0.1, 1) is None


def test_n_needed_inverts_the_mde():
    # sd 0.25, target 0.02: (2.801585 * 0.25 / 0.02)^2 = 1226.4 -> 1227 prompts
    n = n_needed(0.25, 0.02)
    assert n == 1227
    assert mde_of_sd(0.25, n) <= 0.02 < mde_of_sd(0.25, n - 1)
    assert n_needed(None, 0.02) is None and n_needed(0.25, 0) is None
