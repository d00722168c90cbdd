"""The llama.cpp backend with a real llama-server on tiny GGUFs (exported by export-gguf).

Skipped where llama-server is not built (``specfair backends install llamacpp``, ~25 min on 2
cores; `make test` does not build it)."""

import math

import pytest
import torch

from specfair.backends.gguf_export import export_gguf
from specfair.backends.llama_server import LlamaServer, find_llama_server
from specfair.backends.llamacpp import LlamaCppBackend
from specfair.errors import SpecfairError

try:
    BINARY = str(find_llama_server())
except SpecfairError:
    BINARY = None

pytestmark = pytest.mark.skipif(
    BINARY is None,
    reason="llama-server not built; run `specfair backends install llamacpp` to run these",
)

PROMPTS = [[257, 40, 41, 42, 258, 10, 257, 60 + i, 61, 62, 63] for i in range(4)]


@pytest.fixture(scope="module")
def ggufs(tiny_pair, tmp_path_factory):
    root = tmp_path_factory.mktemp("srv")
    return (export_gguf(tiny_pair[0], root / "t.gguf", outtype="f32"),
            export_gguf(tiny_pair[1], root / "d.gguf", outtype="f32"))


def _backend(target, drafter, tiny_pair, gamma=4):
    return LlamaCppBackend(str(target), str(drafter), gamma=gamma, binary=BINARY,
                           tokenizer=str(tiny_pair[0]), threads=1, ctx_size=512)


def test_sd_output_equals_ar_output_and_servers_stop(ggufs, tiny_pair):
    be = _backend(*ggufs, tiny_pair)
    procs = [s.proc for s in be.servers.values()]
    try:
        drafted = 0
        for ids in PROMPTS:
            ar = be.generate("ar", ids, gamma=4, max_new_tokens=32)
            sd = be.generate("sd", ids, gamma=4, max_new_tokens=32)
            assert sd.tokens == ar.tokens and len(ar.tokens) > 0
            assert ar.drafted == 0
            drafted += sd.drafted
            assert sd.accepted <= sd.drafted
            if sd.n_drafts is not None:
                assert sd.drafted <= 4 * sd.n_drafts
        assert drafted > 0
    finally:
        be.close()
    assert all(p.poll() is not None for p in procs)


def test_ngram_drafting_output_equals_ar_output(ggufs, tiny_pair):
    """llama.cpp's own prompt lookup (no draft GGUF): the SD answers are the AR answers. The
    prompt holds the answer once already (prompt + answer + prompt), so the 3-token lookup finds
    it and drafts γ tokens a step. (ngram-simple copies from the latest earlier match and only
    when >= 3 tokens follow it: the tiny model's constant answer alone gives no drafts.)"""
    from specfair.backends.llama_server import ngram_flags, server_help

    try:
        ngram_flags(server_help(BINARY))
    except SpecfairError:
        pytest.skip("this llama-server build has no --spec-type ngram-simple")
    be = LlamaCppBackend(str(ggufs[0]), None, gamma=4, binary=BINARY, proposer="ngram",
                         tokenizer=str(tiny_pair[0]), threads=1, ctx_size=512)
    with be:
        assert be.servers["sd"].draft is None
        drafted = steps = 0
        for ids in PROMPTS:
            ids = ids + be.generate("ar", ids, gamma=4, max_new_tokens=12).tokens + ids
            ar = be.generate("ar", ids, gamma=4, max_new_tokens=24)
            sd = be.generate("sd", ids, gamma=4, max_new_tokens=24)
            assert sd.tokens == ar.tokens and len(ar.tokens) > 0
            assert ar.drafted == 0 and sd.accepted <= sd.drafted
            drafted += sd.drafted
            steps += sd.n_drafts or 0
        assert drafted > 0 and drafted <= 4 * steps


def test_target_as_its_own_drafter_accepts_almost_everything(ggufs, tiny_pair):
    with _backend(ggufs[0], ggufs[0], tiny_pair) as be:
        acc = dra = 0
        for ids in PROMPTS:
            sd = be.generate("sd", ids, gamma=4, max_new_tokens=32)
            acc, dra = acc + sd.accepted, dra + sd.drafted
    assert dra > 0 and acc / dra >= 0.95


def test_exported_drafter_matches_hf_greedy_and_logits(ggufs, tiny_pair):
    from transformers import AutoModelForCausalLM

    from specfair.decoding import autoregressive_generate

    hf = AutoModelForCausalLM.from_pretrained(tiny_pair[1], dtype=torch.float32).eval()
    with LlamaServer(ggufs[1], binary=BINARY, threads=1, ctx_size=512) as srv:
        for ids in PROMPTS[:3]:
            ref = autoregressive_generate(hf, ids, max_new_tokens=16, eos_token_id=258).tokens
            out = srv.request("/completion", {
                "prompt": ids, "n_predict": 16, "temperature": 0.0, "cache_prompt": False,
                "return_tokens": True, "n_probs": 5, "post_sampling_probs": False})
            got = out["tokens"]
            if out.get("stop_type") == "eos" and (not got or got[-1] != 258):
                got = got + [258]
            assert got == ref
            # log-probabilities of the top-5 candidates at each position vs the HF drafter
            seq = torch.tensor([ids + ref])
            with torch.no_grad():
                logp = torch.log_softmax(hf(seq).logits[0].float(), -1)
            for k, pos in enumerate(out["completion_probabilities"][:8]):
                row = logp[len(ids) - 1 + k]
                for cand in pos["top_logprobs"]:
                    assert math.isclose(cand["logprob"], row[cand["id"]].item(), abs_tol=2e-3)


def test_request_to_a_stopped_server_is_a_clear_error(ggufs):
    srv = LlamaServer(ggufs[1], binary=BINARY, threads=1, ctx_size=256).start()
    srv.stop()
    with pytest.raises(SpecfairError, match="not running"):
        srv.request("/completion", {"prompt": [1], "n_predict": 1})


def test_fine_tuned_drafter_exported_serves_like_hf(lora_drafter, ggufs, tiny_pair, tmp_path):
    from transformers import AutoModelForCausalLM

    from specfair.decoding import autoregressive_generate

    ft = export_gguf(lora_drafter, tmp_path / "ft.gguf", outtype="f32")
    hf = AutoModelForCausalLM.from_pretrained(lora_drafter, dtype=torch.float32).eval()
    with LlamaServer(ft, binary=BINARY, threads=1, ctx_size=512) as srv:
        for ids in PROMPTS[:2]:
            ref = autoregressive_generate(hf, ids, max_new_tokens=16, eos_token_id=258).tokens
            out = srv.request("/completion", {"prompt": ids, "n_predict": 16, "temperature": 0.0,
                                              "cache_prompt": False, "return_tokens": True})
            got = out["tokens"]
            if out.get("stop_type") == "eos" and (not got or got[-1] != 258):
                got = got + [258]
            assert got == ref
    with _backend(ggufs[0], ft, tiny_pair) as be:
        for ids in PROMPTS[:2]:
            assert (be.generate("sd", ids, gamma=4, max_new_tokens=24).tokens
                    == be.generate("ar", ids, gamma=4, max_new_tokens=24).tokens)
