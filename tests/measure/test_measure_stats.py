import math

import numpy as np
import pytest

from specfair.measure.stats import (
    bootstrap_ci,
    bootstrap_mean,
    bootstrap_ratio_of_means,
    bootstrap_ratio_of_ratios,
)


def test_mean_ci_contains_true_mean_and_is_seeded():
    x = np.random.default_rng(1).normal(5.0, 1.0, size=200)
    ci = bootstrap_mean(x, seed=3)
    assert ci["lo"] < 5.0 < ci["hi"]
    assert ci["mean"] == pytest.approx(x.mean())
    assert ci["lo"] < ci["mean"] < ci["hi"]
    assert ci["hi"] - ci["lo"] == pytest.approx(2 * 1.96 / math.sqrt(200), rel=0.2)
    assert bootstrap_mean(x, seed=3) == ci
    assert bootstrap_mean(x, seed=4) != ci


def test_ratio_of_means_resamples_jointly():
    den = np.array([1.0, 2.0, 5.0, 10.0])
    ci = bootstrap_ratio_of_means(2 * den, den)
    assert ci == {"mean": pytest.approx(2.0), "lo": pytest.approx(2.0), "hi": pytest.approx(2.0)}
    ci = bootstrap_ratio_of_means([3.0, 1.0], [5.0, 5.0])
    assert ci["mean"] == pytest.approx(0.4)
    assert 0.2 - 1e-12 <= ci["lo"] <= ci["hi"] <= 0.6 + 1e-12


def test_ratio_of_ratios():
    ci = bootstrap_ratio_of_ratios([100, 50], [2, 2], [100, 50], [5, 5])
    assert ci["mean"] == pytest.approx(2.5)


def test_edge_cases():
    assert all(math.isnan(v) for v in bootstrap_mean([]).values())
    assert bootstrap_mean([3.0]) == {"mean": 3.0, "lo": 3.0, "hi": 3.0}
    with pytest.raises(ValueError):
        bootstrap_ci([[1.0, 2.0], [1.0]], lambda a, b: a.mean(1))
