import math

import pytest

from specfair.measure import metrics as M


def test_disparity_by_hand():
    d = M.disparity({"a": 1.0, "b": 2.0, "c": 3.0})
    assert d["worst_task"] == "a" and d["worst_speedup"] == 1.0
    assert d["best_task"] == "c" and d["best_speedup"] == 3.0
    assert d["max_min_ratio"] == pytest.approx(3.0)
    assert d["cv"] == pytest.approx(math.sqrt(2 / 3) / 2)  # population std / mean
    # mean |x_j - x_k| over 9 ordered pairs = 8/9, / (2 * 2)
    assert d["gini"] == pytest.approx(2 / 9)
    assert d["n_tasks"] == 3


def test_gini_cv_edge_cases():
    assert M.gini([2.0, 2.0, 2.0]) == 0.0
    assert M.coefficient_of_variation([5.0]) == 0.0
    # all mass on one of K=3: 4 ordered pairs differ by 4 -> (16/9) / (2 * 4/3) = (K-1)/K
    assert M.gini([0.0, 0.0, 4.0]) == pytest.approx(2 / 3)
    assert M.disparity({"a": float("nan"), "b": 2.0})["n_tasks"] == 1
    assert M.disparity({})["worst_task"] is None


def test_ce_spread_population_variance():
    assert M.ce_spread({"a": 1.0, "b": 3.0}) == pytest.approx(1.0)
    assert M.ce_spread([2.0, 2.0, 2.0]) == 0.0


def test_leviathan_formulas():
    assert M.expected_tau(0.5, 2) == pytest.approx(1.75)
    assert M.expected_speedup(0.5, 2, 0.25) == pytest.approx(1.75 / 1.5)
    assert M.expected_tau(1.0, 4) == 5.0
    assert M.expected_tau(0.0, 4) == 1.0
    assert M.expected_tau(0.999999, 3) == pytest.approx(4.0, rel=1e-5)


def test_compare_bench_pairs_two_drafters_on_the_same_prompts():
    """The ratio of two drafters' speed-ups against the same AR runs is the ratio of their SD
    tokens/s, prompt by prompt; a prompt one drafter lacks is left out; the CI holds it."""
    from specfair.measure.bench_summary import compare_bench

    def sd(i, task, tps):
        return {"id": i, "task": task, "mode": "sd", "new_tokens": 10, "wall_s": 10 / tps}

    base = [sd("a1", "a", 10), sd("a2", "a", 20), sd("b1", "b", 5), sd("b2", "b", 5),
            {"id": "a1", "task": "a", "mode": "ar", "new_tokens": 10, "wall_s": 9.0}]
    other = [sd("a1", "a", 15), sd("a2", "a", 30), sd("b1", "b", 4)]
    out = compare_bench(base, other, n_resamples=200)
    assert set(out) == {"a", "b"} and out["a"]["n"] == 2 and out["b"]["n"] == 1
    assert out["a"]["ratio"]["mean"] == pytest.approx(1.5)  # (15 + 30) / (10 + 20)
    assert out["a"]["ratio"]["lo"] == pytest.approx(1.5) == out["a"]["ratio"]["hi"]
    assert out["b"]["ratio"]["mean"] == pytest.approx(0.8)
    pooled = compare_bench(base, other, n_resamples=200, pooled=True)  # every common prompt
    assert set(pooled) == {"all"} and pooled["all"]["n"] == 3
    assert pooled["all"]["ratio"]["mean"] == pytest.approx((15 + 30 + 4) / (10 + 20 + 5))
    mixed = compare_bench(base, [sd("a1", "a", 20), sd("a2", "a", 20)], n_resamples=500)
    r = mixed["a"]["ratio"]
    assert r["mean"] == pytest.approx(40 / 30) and r["lo"] < r["mean"] < r["hi"]  # a real CI
