"""The adaptive policy that prices the verify curve v(k) and may draft nothing
(:class:`VerifyAwareGamma`, ``--policy adaptive``): its rule against the old one
(``adaptive-flat``), its off arm and probes, the curve (given, fitted online, cached per
machine), greedy equality with plain decoding, and its replay."""

import json
import math

import numpy as np
import pytest
from benchmark_scripts import load_benchmark
from test_replay import _pass

from specfair.decoding import (
    CostAwareGamma,
    VerifyAwareGamma,
    autoregressive_generate,
    expected_speedup,
    speculative_generate,
)
from specfair.decoding.policy import parse_policy
from specfair.errors import SpecfairError
from specfair.measure.costs import check_curve, verify_curve
from specfair.measure.replay import replay, replay_all

C, STEEP = 0.36, 0.14  # the fp32 CPU of issue 30: drafter cost, verify slope


def run(policy, accepted, steps, slope=STEEP, c=C, plain_s=1.0):
    """``steps`` steps told as the engine tells them (verify v(g + 1) plain steps, drafts c
    each); ``accepted(g)``: the drafts accepted of a step of g. Returns the g of each step."""
    out = []
    for _ in range(steps):
        g = policy.next_gamma()
        policy.timed(g, plain_s * (1 + slope * g), "model" if g else "")
        if g:
            policy.update(g, accepted(g), plain_s * c * g, plain_s * (1 + slope * g))
        out.append(g)
    return out


def nothing(g):
    return 0


def everything(g):
    return g


@pytest.mark.parametrize("c", [0.0, 0.05, 0.2, 0.36, 0.6, 1.0])
def test_a_flat_curve_reproduces_the_old_rule_where_drafting_pays(c):
    for a in np.linspace(0.0, 1.0, 21):
        old = CostAwareGamma(c=c, alpha_prior=a, max_gamma=12).next_gamma()
        new = VerifyAwareGamma(c=c, alpha_prior=a, max_gamma=12, verify_slope=0.0).choose()
        if expected_speedup(a, old, c) >= 1.0:
            assert new == old, (a, c)
        else:  # no length pays: off, or a one-draft probe
            assert new in (0, 1), (a, c)
    # and along a request whose drafting pays, step for step (c and a learnt the same way)
    old, new = CostAwareGamma(max_gamma=12), VerifyAwareGamma(max_gamma=12, verify_slope=0.0)
    for policy in (old, new):
        policy.seq = run(policy, lambda g: max(0, g - 1) if g > 3 else g, 40, slope=0.0, c=0.1)
    assert new.seq == old.seq and len(set(new.seq)) > 2


def test_a_steep_curve_turns_drafting_off_where_a_flat_one_drafts():
    # the same acceptance and drafter cost: a step of 1 draft pays unless verifying costs more
    kw = dict(c=C, alpha_prior=0.45, prior_strength=40.0, max_gamma=12)
    assert VerifyAwareGamma(verify_slope=0.0, **kw).choose() >= 1
    assert VerifyAwareGamma(verify_slope=STEEP, **kw).choose() == 0
    assert CostAwareGamma(c=C, alpha_prior=0.45, max_gamma=12).next_gamma() >= 1  # never 0


def test_low_acceptance_on_a_steep_curve_goes_off_but_keeps_probing():
    policy = VerifyAwareGamma(c=C, verify_slope=STEEP, max_gamma=12)
    seq = run(policy, nothing, 80)
    tail = seq[20:]
    assert tail.count(0) >= 0.75 * len(tail)  # mostly plain steps
    probes = [i for i, g in enumerate(tail) if g]
    assert probes and set(tail[i] for i in probes) == {1}  # probes of one draft ...
    assert max(np.diff([-1, *probes, len(tail)])) <= 20  # ... never far apart
    flat = run(VerifyAwareGamma(c=C, verify_slope=0.0, max_gamma=12), everything, 30, slope=0.0)
    assert 0 not in flat and flat[-1] == 12  # high acceptance, flat curve: the most drafts


def test_it_probes_back_on_when_acceptance_rises():
    policy = VerifyAwareGamma(c=C, verify_slope=STEEP, max_gamma=12)
    assert run(policy, nothing, 60)[-10:].count(0) >= 8  # off after a long bad streak
    seq = run(policy, everything, 40)
    first = next(i for i, g in enumerate(seq) if g)
    assert first <= 15  # a probe comes ...
    assert 0 not in seq[first:] and seq[-1] == 12  # ... and one accepted probe turns it on


def test_the_curve_is_fitted_online_from_the_requests_own_verifications():
    policy = VerifyAwareGamma(max_gamma=12)  # no curve given
    assert policy.verify_slope == 0.0  # the prior until two lengths are timed
    for g in (2, 2):
        policy.timed(g, 0.05 * (1 + STEEP * g), "model")
    assert policy.verify_slope == 0.0
    for g in (0, 1, 3, 5, 0, 2):
        policy.timed(g, 0.05 * (1 + STEEP * g), "model" if g else "")
    assert policy.verify_slope == pytest.approx(STEEP)
    # c in plain-step units: the step's verify time over v(g + 1), not the verify time itself
    for _ in range(80):
        policy.timed(4, 0.05 * (1 + STEEP * 4), "model")
        policy.update(4, 2, draft_s=4 * C * 0.05, verify_s=0.05 * (1 + STEEP * 4))
    assert policy.c == pytest.approx(C, rel=1e-3)
    policy.reset()  # a new request fits its own curve
    assert policy.verify_slope == 0.0 and policy.c == policy.c_prior
    for g, t in ((0, 1.0), (4, 0.9), (2, 0.95)):  # faster when longer: no negative slope
        policy.timed(g, t, "model")
    assert policy.verify_slope == 0.0


def test_the_drafters_catch_up_after_off_steps_is_not_its_cost_per_draft():
    policy = VerifyAwareGamma(verify_slope=STEEP, max_gamma=12)
    run(policy, nothing, 30)  # off, probing now and then: c learnt from the on steps only
    c = policy.c
    while policy.next_gamma() == 0:
        pass  # the next step is a probe: its drafter forward also reads the plain steps' tokens
    policy.timed(1, 1 + STEEP, "model")
    policy.update(1, 1, draft_s=5 * C, verify_s=1 + STEEP)
    assert policy.c == c
    policy.next_gamma()  # a drafting step after a drafting one teaches c again
    policy.timed(1, 1 + STEEP, "model")
    policy.update(1, 1, draft_s=5 * C, verify_s=1 + STEEP)
    assert policy.c > c


def test_a_lookup_draft_costs_its_verification_only():
    # acceptance 0.4 on the steep curve: model drafts (c = 0.36) do not pay, lookups do
    def tell(policy, source):
        policy.seq = []
        for i in range(60):
            g = policy.next_gamma()
            policy.timed(g, 1 + STEEP * g, source if g else "")
            if g:
                policy.update(g, 0 if i % 5 < 3 else g, 1e-4 * g if source == "ngram" else C * g,
                              1 + STEEP * g)  # fmt: skip
            policy.seq.append(g)
        return policy

    model = tell(VerifyAwareGamma(verify_slope=STEEP, max_gamma=12), "model")
    lookup = tell(VerifyAwareGamma(verify_slope=STEEP, max_gamma=12), "ngram")
    assert lookup.c == lookup.c_prior and lookup.model_share < 0.01  # no cost learnt from them
    assert model.seq[20:].count(0) >= 24 and 0 not in lookup.seq[20:]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, -1.0, "0.1", True])
def test_a_curve_of_the_wrong_shape_is_refused(bad):
    with pytest.raises(SpecfairError, match="verify slope"):
        VerifyAwareGamma(verify_slope=bad)
    with pytest.raises(SpecfairError, match="verify slope"):
        parse_policy("adaptive").with_verify_slope(bad)


def test_the_policy_names():
    new, flat = parse_policy("adaptive", 8), parse_policy("adaptive-flat", 8)
    assert type(new.for_task(None)) is VerifyAwareGamma
    assert type(flat.for_task(None)) is CostAwareGamma and flat.spec == "adaptive-flat"
    given = new.with_verify_slope(0.2)
    assert given.for_task("x").verify_slope == 0.2 and given.settings()["verify_slope"] == 0.2
    assert new.for_task(None).slope_fixed is None  # none given: fitted per request
    assert flat.with_verify_slope(0.2) == flat  # the old rule takes no curve
    with pytest.raises(SpecfairError, match="expected fixed:N"):
        parse_policy("adaptive-flat:3")


class _Said(VerifyAwareGamma):
    """Remembers what it said each step."""

    def reset(self):
        super().reset()
        self.said, self.timings = [], []

    def next_gamma(self):
        self.said.append(super().next_gamma())
        return self.said[-1]

    def timed(self, drafted, verify_s, source):
        self.timings.append((drafted, verify_s, source))
        super().timed(drafted, verify_s, source)


PROMPTS = [[40, 101, 7, 220, 33, 58] * 3, [5, 9, 5, 9, 5, 9, 11, 12, 13, 5, 9], [77, 3],
           [3, 14, 15, 92, 65, 35]]


@pytest.mark.parametrize("proposer", ["model", "hybrid", "hybrid:6", "ngram:6"])
def test_greedy_output_equals_plain_decoding_with_steps_off(noisy_pair, proposer):
    target, drafter = noisy_pair
    steps, said = [], []
    for prompt in PROMPTS:
        ref = autoregressive_generate(target, prompt, max_new_tokens=40, eos_token_id=[])
        policy = _Said(c=C, verify_slope=0.5, max_gamma=8)  # steep: mostly off, with probes
        res = speculative_generate(target, drafter if proposer != "ngram:6" else None, prompt,
                                   max_new_tokens=40, eos_token_id=[], gamma=policy,
                                   proposer=proposer)  # fmt: skip
        assert res.tokens == ref.tokens, prompt
        # told every step's verification, plain steps too (what an online fit learns from)
        assert policy.timings == [(s.drafted, s.verify_s, s.proposer) for s in res.steps]
        steps += res.steps
        said += policy.said
    assert said.count(0) > len(said) / 2 and any(said)  # off, and probing
    if proposer != "ngram:6":
        assert any(s.proposer == "model" for s in steps)
    if ":" in proposer:  # a lookup of its own length copies while the policy is off
        assert any(s.proposer == "ngram" and g == 0 for s, g in zip(steps, said, strict=True))


@pytest.mark.parametrize("proposer", ["model", "hybrid:6"])
def test_the_replay_replays_the_policy_exactly(noisy_pair, proposer):
    target, drafter = noisy_pair
    said = []
    for prompt in PROMPTS:
        # c and the curve given: its choices depend on the acceptances only, as in the replay
        policy = _Said(c=0.1, verify_slope=0.5, max_gamma=8)
        res = speculative_generate(target, drafter, prompt, max_new_tokens=40, eos_token_id=[],
                                   gamma=policy, proposer=proposer)  # fmt: skip
        m, q = _pass(target, drafter, prompt, res.tokens)
        r = replay(m, q, VerifyAwareGamma(c=0.1, verify_slope=0.5, max_gamma=8),
                   proposer=proposer, context=(prompt, res.tokens), c=0.1, verify_slope=0.5)
        assert list(r.draft_sizes) == [s.drafted for s in res.steps]
        assert list(r.accepted_sizes) == [s.accepted for s in res.steps]
        assert list(r.sources) == [s.proposer for s in res.steps]
        said += policy.said
    assert 0 in said and max(said) > 1  # off steps and longer ones, both replayed


def test_the_replay_prices_off_steps_and_teaches_its_curve():
    bad = ([False] * 60, [0.2] * 60)  # a drafter that is never right
    new, old = VerifyAwareGamma(max_gamma=12), CostAwareGamma(max_gamma=12)
    got_new = replay_all([bad], new, C, STEEP)
    got_old = replay_all([bad], old, C, STEEP)
    assert got_old["speedup"] < 0.72 < 0.9 < got_new["speedup"] <= 1.0  # off: near plain
    assert new.verify_slope == pytest.approx(STEEP)  # fitted from the replay's own step costs
    r = replay(*bad, VerifyAwareGamma(c=C, verify_slope=STEEP))
    assert r.cost(C, STEEP) == pytest.approx(
        sum(1 + k * (C + STEEP) for k in r.draft_sizes)) and 0 in r.draft_sizes


def test_the_verify_curve_is_measured_once_and_cached(noisy_pair, tmp_path):
    target, drafter = noisy_pair
    path = tmp_path / "curves.json"
    first = verify_curve(target, drafter, list(range(20)), "cpu | pair | fp32", path)
    assert not first["cached"] and math.isfinite(first["verify_slope"])
    again = verify_curve(None, None, [], "cpu | pair | fp32", path)  # no model needed
    assert again["cached"] and again["verify_slope"] == first["verify_slope"]
    doc = json.loads(path.read_text())
    doc["curves"]["cpu | pair | fp32"]["verify"]["6"] = -0.5
    path.write_text(json.dumps(doc))
    with pytest.raises(SpecfairError, match="not a cost"):
        verify_curve(None, None, [], "cpu | pair | fp32", path)
    path.write_text("{")
    with pytest.raises(SpecfairError, match="not a JSON file"):
        verify_curve(None, None, [], "other", path)
    with pytest.raises(SpecfairError, match="not a verify curve"):
        check_curve({"verify": {"2": math.nan}, "verify_slope": 0.1, "c": 0.3}, "x")


def test_engine_pairs_the_new_rule_with_the_old(tiny_pair, tmp_path, one_thread, monkeypatch):
    engine = load_benchmark("engine")
    monkeypatch.setenv("SPECFAIR_HOME", str(tmp_path / "home"))
    t_dir, d_dir = tiny_pair
    out = tmp_path / "engine.json"
    argv = ["--target", str(t_dir), "--drafter", str(d_dir), "--dtype", "float32",
            "--device", "cpu", "--kernels", "default", "--limit", "2", "--max-new-tokens", "8",
            "--no-hf", "--conf-gamma", "0", "--out", str(out),
            "--variants", "adaptive+hybrid", "adaptive-flat+hybrid"]
    assert engine.main(argv) == 0
    doc = json.loads(out.read_text())
    curve = doc["meta"]["verify_curve"]
    assert curve["source"] == "cache" and not curve["cached"]
    assert (tmp_path / "home" / "verify-curves.json").is_file()  # measured once, then read
    for rec in doc["prompts"]:
        assert list(rec["variants"]) == ["adaptive+hybrid", "adaptive-flat+hybrid"]
        assert all(v["match_ar"] == 1.0 for v in rec["variants"].values())
    out.unlink()
    assert engine.main(argv) == 0 and json.loads(out.read_text())["meta"]["verify_curve"][
        "cached"]
    assert engine.main(argv + ["--verify-curve", "-1"]) == 2  # v(13) < 0: refused
    assert engine.main(argv + ["--verify-curve", "steep"]) == 2
