"""HF assisted generation (transformers' ``generate(assistant_model=)``): its counters are the
verifications and drafts it ran, the models' generation configs come back as they were, and as a
bench backend it records HF's own drafting settings, lossless against plain decoding."""

import json

import pytest

from specfair.backends.hf_assisted import HFAssistedBackend, transformers_generate
from specfair.decoding import autoregressive_generate
from specfair.errors import SpecfairError
from specfair.measure.bench import run_bench
from specfair.models.load import load_model, load_tokenizer
from specfair.tasks import Prompt, encode_prompt


@pytest.fixture(scope="module")
def models(tiny_pair):
    target = load_model(str(tiny_pair[0]), "float32", "cpu")
    return target, load_model(str(tiny_pair[1]), "float32", "cpu"), load_tokenizer(
        str(tiny_pair[0]))


def test_counters_are_the_verifications_and_drafts(models, one_thread):
    """The target as its own assistant accepts every draft: with a constant γ each
    verification adds γ + 1 tokens, so 2 target forwards make 2γ + 1 <= n <= 2γ + 2 tokens."""
    target, _, tok = models
    twin = load_model(str(target.config._name_or_path), "float32", "cpu")  # the same weights
    ids = encode_prompt(tok, Prompt(id="p", task="t", turns=("hello there",)))
    ar = autoregressive_generate(target, ids, max_new_tokens=9, eos_token_id=[])
    before = twin.generation_config.to_dict()
    run = transformers_generate(target, ids, 9, drafter=twin, gamma=4, eos=[-1])
    assert run.tokens == ar.tokens and len(run.tokens) == 9 and not run.universal
    # 4 drafts, a verification (5 tokens), 3 drafts, a verification (4 tokens)
    assert (run.target_forwards, run.drafter_forwards) == (2, 7)
    assert twin.generation_config.to_dict() == before  # restored after HF's changes


def test_the_backend_records_hf_defaults_and_is_lossless(models, tmp_path, one_thread):
    target, drafter, tok = models
    be = HFAssistedBackend(target, drafter, tok, "t", "d")
    prompts = [Prompt(id=f"p{i}", task="t", turns=(f"hello {i}",)) for i in range(2)]
    path = run_bench((target, drafter, tok), prompts, tmp_path, max_new_tokens=8, backend=be,
                     progress=False, warmup=False, extra_settings={"dtype": "float32"})
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    ar = {r["id"]: r["tokens"] for r in recs if r["mode"] == "ar"}
    sd = [r for r in recs if r["mode"] == "sd"]
    assert len(sd) == 2 and all(r["tokens"] == ar[r["id"]] and r["matches_ar"] for r in sd)
    s = sd[0]["settings"]
    assert (s["backend"], s["policy"], s["gamma"]) == ("hf-assisted", "hf-defaults", 20)
    assert s["hf_assistant"]["assistant_confidence_threshold"] == 0.4
    e = sd[0]["engine"][0]
    assert e["universal"]  # the tiny pair's vocabulary sizes differ: HF's universal path
    assert sd[0]["drafted"] == e["drafter_forwards"] > 0
    with pytest.raises(SpecfairError, match="greedy"):
        be.generate("sd", [1, 2], gamma=20, max_new_tokens=4, temperature=0.7, top_p=1.0,
                    top_k=0, seed=0)
