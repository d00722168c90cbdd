import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

from specfair.measure.estimate import (
    measure_cost_ratio,
    run_estimate,
    teacher_forced_positions,
    teacher_forced_stats,
)
from specfair.measure.estimate_summary import summarize_estimate
from specfair.measure.io import append_jsonl, read_jsonl
from specfair.tasks import encode_prompt

PROMPT = [257, 117, 115, 101, 114, 10, 72, 105, 33, 258, 10, 257, 97, 10]
RESPONSE = [72, 101, 108, 108, 111, 32, 119, 111, 114, 108, 100, 33, 258]


@torch.no_grad()
def direct(target, drafter, prompt, response, temperature=1.0):
    """Reference: full forwards, position by position, no chunking."""
    seq = torch.tensor([prompt + response])
    lt = target(seq).logits[0].float()
    lq = drafter(seq).logits[0].float()
    vc = min(lt.shape[-1], lq.shape[-1])
    out = {"alpha": [], "greedy_match": [], "ce": [], "kl": []}
    for j in range(len(response)):
        s = len(prompt) - 1 + j
        p = F.softmax(lt[s] / temperature, -1)
        q = F.softmax(lq[s] / temperature, -1)
        out["alpha"].append(float(torch.minimum(p[:vc], q[:vc]).sum()))
        out["greedy_match"].append(float(lt[s].argmax() == lq[s].argmax()))
        pc = F.softmax(lt[s, :vc] / temperature, -1)
        lqc = F.log_softmax(lq[s, :vc] / temperature, -1)
        out["ce"].append(float(-(pc * lqc).sum()))
        out["kl"].append(float((pc * (pc.log() - lqc)).sum()))
    return out


@torch.no_grad()
def greedy_reference(target, prompt, n):
    ids = list(prompt)
    for _ in range(n):
        ids.append(int(target(torch.tensor([ids])).logits[0, -1].argmax()))
    return ids[len(prompt) :]


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_estimator_equals_direct_computation(tiny_models, temperature):
    target, drafter, _ = tiny_models
    got = teacher_forced_positions(
        target, drafter, PROMPT, RESPONSE, temperature=temperature, chunk_size=4
    )
    ref = direct(target, drafter, PROMPT, RESPONSE, temperature)
    for k in ("alpha", "greedy_match", "ce", "kl"):
        assert got[k].tolist() == pytest.approx(ref[k], abs=1e-5), k
    assert 0.0 < got["alpha"].mean() < 1.0


def test_fallback_path_equals_fast_path(tiny_models, monkeypatch):
    target, drafter, _ = tiny_models
    fast = teacher_forced_positions(target, drafter, PROMPT, RESPONSE, chunk_size=5)
    monkeypatch.setattr(drafter.config, "final_logit_softcapping", 30.0, raising=False)
    slow = teacher_forced_positions(target, drafter, PROMPT, RESPONSE, chunk_size=5)
    for k in fast:
        assert slow[k].tolist() == pytest.approx(fast[k].tolist(), abs=1e-5)


def test_alpha_is_one_when_drafter_is_target(tiny_models):
    target, _, _ = tiny_models
    got = teacher_forced_positions(target, target, PROMPT, RESPONSE, chunk_size=3)
    assert got["alpha"].tolist() == pytest.approx([1.0] * len(RESPONSE), abs=1e-6)
    assert got["greedy_match"].sum() == len(RESPONSE)
    assert got["kl"].abs().max() < 1e-5


@torch.no_grad()
@pytest.mark.parametrize("pair", ["tiny_models", "noisy_pair"])
def test_greedy_agreement_is_drafter_argmax_equals_target_token(pair, request):
    target, drafter = request.getfixturevalue(pair)[:2]
    resp = greedy_reference(target, PROMPT, 20)
    # reference loop: drafter's greedy proposal at each prefix of the target's greedy response
    ids, agree = list(PROMPT), []
    for tok in resp:
        agree.append(float(int(drafter(torch.tensor([ids])).logits[0, -1].argmax()) == tok))
        ids.append(tok)
    s = teacher_forced_stats(target, drafter, PROMPT, resp, chunk_size=7)
    assert s["n_positions"] == 20
    assert s["target_match_sum"] == 20  # the target's own greedy tokens
    assert s["greedy_match_sum"] == sum(agree)
    if pair == "noisy_pair":
        assert 0 < sum(agree) < 20  # sometimes agrees, sometimes not


def test_peft_drafter_is_accepted(tiny_models):
    peft = pytest.importorskip("peft")
    target, drafter, _ = tiny_models
    import copy

    torch.manual_seed(0)
    cfg = peft.LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    lora = peft.get_peft_model(copy.deepcopy(drafter), cfg).eval()
    got = teacher_forced_positions(target, lora, PROMPT, RESPONSE, chunk_size=4)
    ref = direct(target, lora, PROMPT, RESPONSE)
    assert got["alpha"].tolist() == pytest.approx(ref["alpha"], abs=1e-5)
    base = teacher_forced_positions(target, drafter, PROMPT, RESPONSE, chunk_size=4)
    assert got["alpha"].tolist() != pytest.approx(base["alpha"].tolist(), abs=1e-5)


def test_empty_response(tiny_models):
    target, drafter, _ = tiny_models
    s = teacher_forced_stats(target, drafter, PROMPT, [])
    assert s["n_positions"] == 0 and s["alpha_sum"] == 0.0


def test_cost_ratio_is_positive(tiny_models):
    target, drafter, _ = tiny_models
    c = measure_cost_ratio(target, drafter, context_len=16, repeats=2, warmup=1)
    assert math.isfinite(c) and c > 0


def _prefill_cache(path, target, tok, prompts, n=12):
    """Responses cache written by hand (greedy reference loop), so no decoding is needed."""
    for p in prompts:
        history = []
        for turn in range(len(p.turns)):
            ids = encode_prompt(tok, p, turn=turn, history=history)
            resp = greedy_reference(target, ids, n)
            append_jsonl(
                path,
                {
                    "id": p.id,
                    "task": p.task,
                    "turn": turn,
                    "prompt_ids": ids,
                    "response_ids": resp,
                    "max_new_tokens": n,
                },
            )
            history.append(resp)


def test_run_estimate_from_cache_resumes_and_summarises(
    tiny_models, noisy_pair, tiny_prompts, tmp_path
):
    tok = tiny_models[2]
    target, drafter = noisy_pair
    _prefill_cache(tmp_path / "responses.jsonl", target, tok, tiny_prompts)
    path = run_estimate(
        target,
        drafter,
        tok,
        tiny_prompts[:2],
        tmp_path,
        drafter_label="d",
        max_new_tokens=12,
        progress=False,
        chunk_size=5,
    )
    assert [r["id"] for r in read_jsonl(path)] == ["c1", "m1"]
    run_estimate(
        target,
        drafter,
        tok,
        tiny_prompts,
        tmp_path,
        drafter_label="d",
        max_new_tokens=12,
        progress=False,
    )
    recs = read_jsonl(path)
    assert [r["id"] for r in recs] == ["c1", "m1", "w1"]
    assert recs[2]["n_positions"] == 24 and recs[2]["n_turns"] == 2
    for r in recs:
        assert set(r) >= {
            "id",
            "task",
            "n_positions",
            "alpha_sum",
            "greedy_match_sum",
            "ce_sum",
            "kl_sum",
        }
        assert r["target_match_sum"] == r["n_positions"]
    # per-prompt sums equal the direct computation
    cache = read_jsonl(tmp_path / "responses.jsonl")
    ref = direct(target, drafter, cache[0]["prompt_ids"], cache[0]["response_ids"])
    assert recs[0]["alpha_sum"] == pytest.approx(sum(ref["alpha"]), abs=1e-4)
    assert len(cache) == 4  # nothing regenerated
    # the per-position pass replays the engine's steps exactly (greedy, fixed gamma)
    from specfair.decoding import speculative_generate
    from specfair.decoding.gamma import FixedGamma
    from specfair.measure.replay import Policy, pass_of, replay

    for r in recs:
        assert sum(len(q["match"]) for q in r["passes"]) == r["n_positions"]
        assert sum(sum(q["match"]) for q in r["passes"]) == r["greedy_match_sum"]
        assert all(0 < c <= 1 for q in r["passes"] for c in q["conf"])
    prompt, resp = cache[0]["prompt_ids"], cache[0]["response_ids"]
    res = speculative_generate(target, drafter, prompt, gamma=FixedGamma(3),
                               max_new_tokens=len(resp), eos_token_id=[])
    assert res.tokens == resp
    rp = replay(*pass_of(recs[0]["passes"][0]), Policy("fixed", 3))
    assert (rp.steps, rp.accepted) == (len(res.steps), res.n_accepted)

    with pytest.raises(Exception, match="drafter"):
        run_estimate(
            target,
            drafter,
            tok,
            tiny_prompts,
            tmp_path,
            drafter_label="other",
            max_new_tokens=12,
            progress=False,
        )

    s = summarize_estimate(path, c=0.25, gamma=3)
    assert list(s["tasks"]) == ["code", "math", "writing"]
    w = s["tasks"]["writing"]
    assert w["greedy_alpha"]["mean"] == pytest.approx(recs[2]["greedy_match_sum"] / 24)
    assert set(w["predicted"]) == {str(g) for g in range(1, 9)}
    a = w["greedy_alpha"]["mean"]
    assert w["predicted"]["3"]["tau"] == pytest.approx((1 - a**4) / (1 - a))
    assert w["predicted"]["3"]["speedup"] == pytest.approx((1 - a**4) / (1 - a) / 1.75)
    d = s["disparity"]
    assert {"worst_task", "max_min_ratio", "cv", "gini", "ce_spread"} <= set(d)
    ces = [s["tasks"][t]["ce"]["mean"] for t in s["tasks"]]
    assert d["ce_spread"] == pytest.approx(float(np.var(ces)))
    assert s["meta"]["c"] == 0.25 and s["meta"]["gamma"] == 3
    pol = w["policies"]
    assert {"fixed gamma=5", "heuristic gamma=5", "confidence<0.4 (max 20)"} < set(pol)
    best = pol["per-task gamma (best fixed 1-10, oracle)"]
    assert best["speedup"] >= pol["fixed gamma=5"]["speedup"] and 1 <= best["gamma"] <= 10


def test_run_estimate_generates_with_decoding(tiny_models, tiny_prompts, tmp_path):
    target, drafter, tok = tiny_models
    path = run_estimate(
        target,
        drafter,
        tok,
        tiny_prompts,
        tmp_path,
        drafter_label="d",
        max_new_tokens=10,
        progress=False,
    )
    cache = read_jsonl(tmp_path / "responses.jsonl")
    assert [(r["id"], r["turn"]) for r in cache] == [("c1", 0), ("m1", 0), ("w1", 0), ("w1", 1)]
    assert {r["source"] for r in cache} == {"generated"}
    for r in cache:  # speculative decoding is lossless: the target's greedy answer
        assert r["response_ids"] == greedy_reference(
            target, r["prompt_ids"], len(r["response_ids"])
        )
    assert len(read_jsonl(path)) == 3


def test_target_hidden_states_are_reused_across_drafters(tiny_pair, tiny_models):
    import copy

    from specfair.measure.signals import forget_target_states

    _, drafter, _ = tiny_models
    target = AutoModelForCausalLM.from_pretrained(tiny_pair[0], dtype=torch.float32).eval()
    calls = []
    target.model.register_forward_hook(lambda *a: calls.append(1))
    forget_target_states()
    first = teacher_forced_positions(target, drafter, PROMPT, RESPONSE, chunk_size=4)
    other = copy.deepcopy(drafter)
    with torch.no_grad():
        other.model.norm.weight.mul_(0.5)
    second = teacher_forced_positions(target, other, PROMPT, RESPONSE, chunk_size=4)
    assert len(calls) == 1  # the target's decoder ran once for both drafters
    forget_target_states()
    ref = teacher_forced_positions(target, other, PROMPT, RESPONSE, chunk_size=4)
    assert len(calls) == 2
    for k in ref:
        assert torch.equal(second[k], ref[k]), k
    assert not torch.equal(first["ce"], second["ce"])
    with torch.no_grad():  # an in-place change of the target invalidates what was remembered
        target.model.norm.weight.mul_(2.0)
    changed = teacher_forced_positions(target, other, PROMPT, RESPONSE, chunk_size=4)
    assert len(calls) == 3
    assert not torch.equal(changed["ce"], ref["ce"])


def test_batched_fill_answers_given_ids_and_refuses_another_prompt(tiny_models, tiny_prompts,
                                                                   tmp_path):
    """The one writer of response records: a batched fill of token-id prompts (the study's
    cut prompts) writes greedy answers, resumes, and refuses a cache made for other ids."""
    from specfair.errors import SpecfairError
    from specfair.measure.responses import fill_responses_batched, read_responses

    target, _, tok = tiny_models
    ps = tiny_prompts[:2]
    ids = [encode_prompt(tok, p)[-6:] for p in ps]
    path = tmp_path / "answers.jsonl"
    assert fill_responses_batched(target, tok, ps, path, max_new_tokens=5, prompt_ids=ids,
                                  progress=False, source="drafter") == 2
    recs = read_responses(path)
    for p, i in zip(ps, ids, strict=True):
        r = recs[(p.id, 0)]
        assert r["prompt_ids"] == i and r["source"] == "drafter"
        assert r["response_ids"] == greedy_reference(target, i, 5)[: len(r["response_ids"])]
    assert fill_responses_batched(target, tok, ps, path, max_new_tokens=5, prompt_ids=ids,
                                  progress=False) == 0
    with pytest.raises(SpecfairError, match="another prompt"):
        fill_responses_batched(target, tok, ps, path, max_new_tokens=5,
                               prompt_ids=[i[1:] for i in ids], progress=False)
    with pytest.raises(SpecfairError, match="max_new_tokens"):
        fill_responses_batched(target, tok, ps, path, max_new_tokens=6, prompt_ids=ids,
                               progress=False)
