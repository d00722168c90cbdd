"""Task samplers draw with the documented frequencies (fixed seed, many draws)."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from specfair.distill.weighting import TaskSampler, disparity_weights

# 3 tasks with 6, 3 and 1 examples
LABELS = ["a"] * 6 + ["b"] * 3 + ["c"]
N = 30_000


def freqs(sampler, n=N, batch=10):
    c = Counter()
    for _ in range(n // batch):
        c.update(LABELS[i] for i in sampler.sample(batch))
    return {t: c[t] / n for t in ("a", "b", "c")}


def test_uniform_over_examples():
    f = freqs(TaskSampler(LABELS, "uniform", seed=1))
    assert f == pytest.approx({"a": 0.6, "b": 0.3, "c": 0.1}, abs=0.01)


def test_balanced_over_tasks_and_each_example_cycled():
    s = TaskSampler(LABELS, "balanced", seed=2)
    f = freqs(s)
    assert f == pytest.approx({t: 1 / 3 for t in "abc"}, abs=0.01)
    # within a task every example is seen once per cycle
    s = TaskSampler(["a"] * 6, "balanced", seed=3)
    assert sorted(s.sample(6)) == list(range(6))


def test_disparity_rule_and_frequencies():
    alphas = {"a": 0.8, "b": 0.7, "c": 0.6}
    T, floor = 0.05, 0.2
    z = {t: math.exp((0.8 - a) / T) for t, a in alphas.items()}
    expected = {t: floor / 3 + (1 - floor) * z[t] / sum(z.values()) for t in z}
    assert disparity_weights(alphas, ["a", "b", "c"], T, floor) == pytest.approx(expected)
    s = TaskSampler(LABELS, "disparity", seed=4, temperature=T, floor=floor)
    assert s.weights() == pytest.approx({t: 1 / 3 for t in "abc"})  # before any estimate
    s.update(alphas)
    assert freqs(s) == pytest.approx(expected, abs=0.01)
    # the floor: even a task far ahead keeps floor / K
    w = disparity_weights({"a": 1.0, "b": 0.0, "c": 0.0}, ["a", "b", "c"], 0.01, 0.3)
    assert w["a"] == pytest.approx(0.1, abs=1e-9) and min(w.values()) >= 0.1 - 1e-12
    # a task without an estimate gets the mean deficit
    w = disparity_weights({"a": 0.9, "b": 0.7}, ["a", "b", "c"], 0.1, 0.0)
    assert w["a"] < w["c"] < w["b"]


def test_per_task_batches_are_single_task_and_balanced():
    s = TaskSampler(LABELS, "per-task", seed=5)
    c = Counter()
    for _ in range(3000):
        idx = s.sample(4)
        assert len({LABELS[i] for i in idx}) == 1
        c[LABELS[idx[0]]] += 1
    assert {t: c[t] / 3000 for t in "abc"} == pytest.approx({t: 1 / 3 for t in "abc"}, abs=0.03)


def test_state_roundtrip_reproduces_draws():
    import json

    s = TaskSampler(LABELS, "disparity", seed=6)
    s.update({"a": 0.9, "b": 0.5, "c": 0.7})
    s.sample(7)
    state = json.loads(json.dumps(s.state_dict()))
    want = [s.sample(5) for _ in range(20)]
    s2 = TaskSampler(LABELS, "disparity", seed=999)
    s2.load_state_dict(state)
    assert [s2.sample(5) for _ in range(20)] == want
