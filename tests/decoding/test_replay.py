"""Replaying a drafting policy on a teacher-forced pass equals running it (greedy)."""

from __future__ import annotations

import pytest
import torch

from specfair.decoding import speculative_generate
from specfair.decoding.gamma import FixedGamma, HeuristicGamma
from specfair.errors import SpecfairError
from specfair.measure.replay import Policy, replay, replay_all


def _pass(target, drafter, prompt, tokens):
    ids = torch.tensor([prompt + tokens])
    ids = ids.masked_fill(ids >= drafter.get_input_embeddings().num_embeddings, 256)  # its pad
    with torch.no_grad():
        probs = torch.softmax(drafter(input_ids=ids).logits[0].float(), -1)
    top = probs[len(prompt) : len(prompt) + len(tokens) - 1]  # predicting tokens[1:]
    match = [int(a) == t for a, t in zip(top.argmax(-1), tokens[1:], strict=True)]
    return match, top.max(-1).values.tolist()


@pytest.mark.parametrize("policy", [Policy("fixed", 5), Policy("fixed", 2),
                                    Policy("heuristic", 5, max_gamma=32),
                                    Policy("confidence", max_gamma=20, threshold=0.4)])
def test_replay_counts_equal_the_engine(noisy_pair, policy):
    target, drafter = noisy_pair
    for seed in range(3):
        prompt = torch.randint(0, 250, (6,), generator=torch.Generator().manual_seed(seed))
        prompt = prompt.tolist()
        if policy.kind == "fixed":
            kw = {"gamma": FixedGamma(policy.gamma)}
        elif policy.kind == "heuristic":
            kw = {"gamma": HeuristicGamma(policy.gamma, policy.max_gamma)}
        else:
            kw = {"gamma": FixedGamma(policy.max_gamma), "draft_threshold": policy.threshold}
        res = speculative_generate(target, drafter, prompt, max_new_tokens=40,
                                   eos_token_id=[], **kw)
        assert res.stop_reason == "max_tokens"
        r = replay(*_pass(target, drafter, prompt, res.tokens), policy)
        assert (r.steps, r.accepted) == (len(res.steps), res.n_accepted)
        assert list(r.accepted_sizes) == [s.accepted for s in res.steps]
        if policy.kind != "confidence":
            assert list(r.draft_sizes) == [s.drafted for s in res.steps]
        else:  # exact up to each step's first rejected draft (see the module docstring)
            assert [min(k, a + 1) for k, a in zip(r.draft_sizes, r.accepted_sizes, strict=True)] \
                == [min(s.drafted, s.accepted + 1) for s in res.steps]


# prompts that repeat themselves, so that lookups match (and miss) often
LOOKUP_PROMPTS = [[40, 101, 7, 220, 33, 58] * 3, [5, 9, 5, 9, 5, 9, 11, 12, 13, 5, 9], [77, 3]]


@pytest.mark.parametrize("proposer", ["ngram", "ngram:6", "hybrid", "hybrid:6"])
@pytest.mark.parametrize("policy", [Policy("fixed", 3), Policy("heuristic", 2, max_gamma=8)])
def test_replay_of_a_lookup_proposer_equals_the_engine(noisy_pair, proposer, policy):
    target, drafter = noisy_pair
    sources = set()
    for prompt in LOOKUP_PROMPTS:
        gp = FixedGamma(policy.gamma) if policy.kind == "fixed" else HeuristicGamma(
            policy.gamma, policy.max_gamma)
        d = drafter if proposer.startswith("hybrid") else None
        res = speculative_generate(target, d, prompt, max_new_tokens=40, eos_token_id=[],
                                   gamma=gp, proposer=proposer)  # fmt: skip
        m, q = _pass(target, drafter, prompt, res.tokens)
        r = replay(m, q, policy, proposer=proposer, context=(prompt, res.tokens))
        assert list(r.draft_sizes) == [s.drafted for s in res.steps]
        assert list(r.accepted_sizes) == [s.accepted for s in res.steps]
        assert list(r.sources) == [s.proposer for s in res.steps]
        sources |= set(r.sources)
    assert "ngram" in sources and ("model" in sources) == proposer.startswith("hybrid")


def test_a_lookup_step_costs_its_verification_only():
    r = replay([False] * 7, [0.5] * 7, Policy("fixed", 2), proposer="hybrid:4",
               context=([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 7, 9, 9]))
    # the prefill's 1 looks up 2 3 4 5 (4 tokens, whatever γ = 2 says; all accepted) and the
    # target adds 7; nothing precedes 7: the drafter drafts min(γ, room 1) = 1, rejected; the
    # last token is a plain target step
    assert (r.draft_sizes, r.accepted_sizes, r.sources) == ((4, 1, 0), (4, 0, 0),
                                                            ("ngram", "model", ""))
    assert r.cost(0.5, 0.1) == pytest.approx((1 + 0.4) + (0.5 + 1 + 0.1) + 1)
    with pytest.raises(SpecfairError, match="needs the prompt and answer"):
        replay([True], [0.9], Policy("fixed", 2), proposer="ngram")
    with pytest.raises(SpecfairError, match="model proposer only"):
        replay([True], [0.9], Policy("confidence"), proposer="hybrid", context=([1], [1, 2]))


def test_replay_arithmetic():
    r = replay([True] * 12, [0.9] * 12, Policy("fixed", 5))
    assert (r.steps, r.drafted, r.accepted) == (2, 10, 10)
    assert r.speedup(0.0, 0.0) == pytest.approx(12 / 2)
    assert r.speedup(0.5, 0.0) == pytest.approx(12 / (2 + 10 * 0.5))
    none = replay([False] * 6, [0.1] * 6, Policy("confidence", max_gamma=20, threshold=0.4))
    assert none.draft_sizes == (1, 1, 1, 1, 1, 0) and none.accepted == 0
    out = replay_all([([True] * 12, [0.9] * 12)], Policy("fixed", 5), 0.0, 0.0)
    assert out["alpha"] == 1.0 and out["speedup"] == pytest.approx(6.0)


def test_replay_proposers_ranks_variants_on_held_out_answers(tmp_path):
    import json

    from benchmark_scripts import load_benchmark

    mod = load_benchmark("replay_proposers")
    run = tmp_path / "run"
    run.mkdir()
    (run / "costs.json").write_text(json.dumps({"c": 0.4, "verify_slope": 0.01}))
    # an answer that copies its prompt (lookup drafts it) and one the drafter drafts well
    answers = [{"id": "a", "prompt_ids": [1, 2, 3, 4, 5, 6, 7], "response_ids": [1, 2, 3, 4, 5, 6]},
               {"id": "b", "prompt_ids": [9], "response_ids": [10, 11, 12, 13, 14, 15]}]
    passes = [{"arm": "base", "id": "a", "task": "copy", "match": [0] * 6, "conf": [0.5] * 6},
              {"arm": "base", "id": "b", "task": "free", "match": [1] * 6, "conf": [0.9] * 6},
              {"arm": "uniform", "id": "b", "task": "free", "match": [0] * 6, "conf": [0.1] * 6}]
    (run / "heldout_responses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in answers))
    (run / "policy_eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in passes))
    out = tmp_path / "out.json"
    assert mod.main(["--run-dir", str(run), "--variants", "fixed:2+model", "fixed:2+hybrid:4",
                     "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["ranked"] == ["fixed:2+hybrid:4", "fixed:2+model"] and doc["n_prompts"] == 2
    v = doc["variants"]
    # 5 tokens after the prefill's, every draft rejected: steps of 2, 2, 2, 1, 0 drafts
    cost = 3 * (2 * 0.4 + 1 + 0.02) + (0.4 + 1 + 0.01) + 1
    assert v["fixed:2+model"]["by_task"]["copy"] == pytest.approx(5 / cost)
    assert v["fixed:2+hybrid:4"]["worst_task"] == "free"
    # a drafter that may draft only the most frequent training token (10) no longer matches 11..15
    (run / "train_drafter_text.jsonl").write_text(json.dumps(
        {"prompt_ids": [10, 10], "response_ids": [10, 12]}) + "\n")
    assert mod.main(["--run-dir", str(run), "--variants", "fixed:2+model", "--draft-vocab", "1",
                     "--out", str(out)]) == 0
    assert json.loads(out.read_text())["variants"]["fixed:2+model"]["by_task"]["free"] \
        == pytest.approx(5 / cost)  # every draft of "free" now rejected, as for "copy"
    assert mod.main(["--run-dir", str(run), "--draft-vocab", "0"]) == 2
    assert mod.main(["--run-dir", str(run), "--variants", "fixed:2+lookup"]) == 2
    assert mod.main(["--run-dir", str(tmp_path / "nope")]) == 2
