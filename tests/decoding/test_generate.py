"""The decoders against Hugging Face's greedy ``generate``, stopping rules, records, errors."""

import pytest
import torch

from specfair.decoding import (
    CostAwareGamma,
    FixedGamma,
    HeuristicGamma,
    autoregressive_generate,
    speculative_generate,
)
from specfair.errors import SpecfairError

MAX_NEW = 32
PROMPTS = [
    torch.randint(0, 259, (1, n), generator=torch.Generator().manual_seed(n)).tolist()[0]
    for n in (1, 3, 5, 8, 13, 21)
]
POLICIES = {
    "fixed1": lambda: 1,
    "fixed2": lambda: 2,
    "fixed4": lambda: 4,
    "fixed7": lambda: FixedGamma(7),
    "heuristic": lambda: HeuristicGamma(start=3, max_gamma=10),
    "costaware_c": lambda: CostAwareGamma(c=0.3, alpha_prior=0.5),
    "costaware_measured": lambda: CostAwareGamma(),
}


def hf_greedy(model, prompt, max_new_tokens=MAX_NEW, **kwargs) -> list[int]:
    ids = torch.tensor([prompt])
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        do_sample=False,
        max_new_tokens=max_new_tokens,
        **kwargs,
    )
    return out[0, ids.shape[1] :].tolist()


@pytest.fixture(scope="module")
def references(noisy_pair):
    target, _ = noisy_pair
    return [hf_greedy(target, p) for p in PROMPTS]


def check_records(res, max_new_tokens):
    assert 1 <= len(res.tokens) <= max_new_tokens
    assert sum(s.accepted_len for s in res.steps) == len(res.tokens) - 1
    for s in res.steps:
        assert s.drafted == s.gamma and 0 <= s.accepted <= s.gamma
        assert 1 <= s.accepted_len <= s.accepted + 1
        assert s.draft_s >= 0 and s.verify_s > 0
    spent = res.prefill_s + sum(s.draft_s + s.verify_s for s in res.steps)
    assert 0 < spent <= res.wall_s
    assert 0.0 <= res.alpha <= 1.0 and res.tokens_per_s > 0


@pytest.mark.parametrize("policy", list(POLICIES))
def test_greedy_speculative_equals_hf_greedy(noisy_pair, references, policy):
    target, drafter = noisy_pair
    steps = []
    for prompt, ref in zip(PROMPTS, references, strict=True):
        res = speculative_generate(
            target, drafter, prompt, max_new_tokens=MAX_NEW, gamma=POLICIES[policy]()
        )
        assert res.tokens == ref, prompt
        check_records(res, MAX_NEW)
        assert res.stop_reason == ("eos" if ref[-1] == 258 else "max_tokens")
        steps += [s for s in res.steps if s.gamma > 0]
    # Both verification outcomes were exercised: a rejection and a fully accepted block (+ bonus).
    assert any(s.accepted < s.gamma for s in steps)
    assert any(s.accepted == s.gamma and s.accepted_len == s.gamma + 1 for s in steps)


def test_greedy_autoregressive_equals_hf_greedy(noisy_pair, references):
    target, _ = noisy_pair
    for prompt, ref in zip(PROMPTS, references, strict=True):
        res = autoregressive_generate(target, prompt, max_new_tokens=MAX_NEW)
        assert res.tokens == ref
        check_records(res, MAX_NEW)
        assert all(s.gamma == 0 and s.accepted_len == 1 for s in res.steps)
        assert res.alpha == 0.0 and res.tau == 1.0


@pytest.mark.parametrize("gamma", [1, 3, 7])
def test_eos_truncates_like_hf(noisy_pair, references, gamma):
    """Make a token the target greedily produces mid-output the EOS: the output stops right
    after its first occurrence (also inside an accepted block), as HF's does."""
    target, drafter = noisy_pair
    checked = 0
    for prompt, ref in zip(PROMPTS, references, strict=True):
        eos = ref[min(5, len(ref) - 1)]
        cut = ref[: ref.index(eos) + 1]
        assert hf_greedy(target, prompt, eos_token_id=eos) == cut
        for eos_arg in (eos, [eos, 999]):
            sd = speculative_generate(
                target, drafter, prompt, max_new_tokens=MAX_NEW, gamma=gamma, eos_token_id=eos_arg
            )
            assert sd.tokens == cut and sd.stop_reason == "eos"
            check_records(sd, MAX_NEW)
        ar = autoregressive_generate(target, prompt, max_new_tokens=MAX_NEW, eos_token_id=eos)
        assert ar.tokens == cut and ar.stop_reason == "eos"
        checked += 1
    assert checked == len(PROMPTS)


def test_eos_as_first_token_and_max_new_tokens_one(noisy_pair, references):
    target, drafter = noisy_pair
    prompt, ref = PROMPTS[2], references[2]
    sd = speculative_generate(target, drafter, prompt, max_new_tokens=MAX_NEW, eos_token_id=ref[0])
    assert sd.tokens == ref[:1] and sd.stop_reason == "eos" and sd.steps == []
    for n in (1, 2, 3):
        sd = speculative_generate(target, drafter, prompt, max_new_tokens=n, gamma=5)
        ar = autoregressive_generate(target, prompt, max_new_tokens=n)
        assert sd.tokens == ar.tokens == ref[:n] and sd.stop_reason == "max_tokens"


def test_input_forms_agree(noisy_pair, references):
    target, drafter = noisy_pair
    prompt = PROMPTS[3]
    forms = [prompt, tuple(prompt), torch.tensor(prompt), torch.tensor([prompt])]
    for ids in forms:
        res = speculative_generate(target, drafter, ids, max_new_tokens=MAX_NEW, gamma=3)
        assert res.tokens == references[3]


def test_prompt_tokens_beyond_the_drafter_vocabulary(noisy_pair):
    """Ids the drafter's embedding lacks (272..287) in the prompt: no crash, still lossless."""
    target, drafter = noisy_pair
    prompt = [5, 280, 17, 287, 272]
    res = speculative_generate(target, drafter, prompt, max_new_tokens=16, gamma=3)
    assert res.tokens == hf_greedy(target, prompt, max_new_tokens=16)


def test_seeded_sampling_is_reproducible(noisy_pair):
    target, drafter = noisy_pair
    kw = dict(max_new_tokens=24, gamma=3, temperature=1.0, top_k=50, top_p=0.95)
    a = speculative_generate(target, drafter, PROMPTS[4], seed=11, **kw)
    b = speculative_generate(target, drafter, PROMPTS[4], seed=11, **kw)
    assert a.tokens == b.tokens and [s.accepted for s in a.steps] == [s.accepted for s in b.steps]
    outs = {
        tuple(speculative_generate(target, drafter, PROMPTS[4], seed=s, **kw).tokens)
        for s in range(4)
    }
    assert len(outs) > 1
    kw.pop("gamma")
    assert (
        autoregressive_generate(target, PROMPTS[4], seed=5, **kw).tokens
        == autoregressive_generate(target, PROMPTS[4], seed=5, **kw).tokens
    )


def test_loaded_pair_with_tokenizer(loaded_pair):
    """The shared on-disk tiny pair (tied embeddings, 1-layer drafter, chat template)."""
    target, drafter, tok = loaded_pair
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "Write a haiku about caches."}],
        add_generation_prompt=True,
        tokenize=True,
    )["input_ids"]
    sd = speculative_generate(target, drafter, ids, max_new_tokens=20, gamma=4, tokenizer=tok)
    assert sd.tokens == hf_greedy(target, ids, max_new_tokens=20)
    assert sd.text == tok.decode(sd.tokens, skip_special_tokens=True)
    ar = autoregressive_generate(target, ids, max_new_tokens=20, tokenizer=tok)
    assert ar.tokens == sd.tokens and ar.text == sd.text
    assert speculative_generate(target, drafter, ids, max_new_tokens=5).text is None


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(gamma=0), "gamma"),
        (dict(gamma=-2), "gamma"),
        (dict(gamma=2.5), "gamma"),
        (dict(input_ids=[]), "empty"),
        (dict(input_ids=torch.zeros(0, dtype=torch.long)), "empty"),
        (dict(input_ids=torch.zeros((2, 3), dtype=torch.long)), "batch"),
        (dict(max_new_tokens=0), "max_new_tokens"),
        (dict(max_new_tokens=510), "context"),
        (dict(temperature=-0.5), "temperature"),
        (dict(top_p=0.0), "top_p"),
    ],
)
def test_bad_input(noisy_pair, kwargs, message):
    target, drafter = noisy_pair
    call = dict(input_ids=[1, 2, 3], max_new_tokens=4, gamma=2) | kwargs
    with pytest.raises(SpecfairError, match=message):
        speculative_generate(target, drafter, **call)
    if "gamma" not in kwargs:
        call.pop("gamma")
        with pytest.raises(SpecfairError, match=message):
            autoregressive_generate(target, **call)


def test_bad_policy_arguments():
    for bad in (lambda: FixedGamma(0), lambda: HeuristicGamma(0), lambda: HeuristicGamma(9, 4)):
        with pytest.raises(SpecfairError):
            bad()


@pytest.mark.parametrize("threshold", [0.3, 0.9])
def test_draft_threshold_keeps_greedy_output(noisy_pair, references, threshold):
    """Stopping a draft early on low drafter confidence changes only how much is drafted."""
    target, drafter = noisy_pair
    short = 0
    for prompt, ref in zip(PROMPTS, references, strict=True):
        res = speculative_generate(
            target, drafter, prompt, max_new_tokens=MAX_NEW, gamma=6, draft_threshold=threshold
        )
        assert res.tokens == ref
        check_records(res, MAX_NEW)
        short += sum(1 for s in res.steps if 0 < s.gamma < 6 and s is not res.steps[-1])
    assert short > 0  # some steps were cut short by the threshold
