"""The vLLM adapter against responses and metrics in vLLM's shapes (no GPU, no vLLM).

vLLM's CPU build has no draft-model speculation, so these objects are written by hand in the
shapes of vLLM >= 0.12: ``LLM.generate`` returns ``RequestOutput`` objects whose ``outputs[0]``
has ``token_ids`` and ``finish_reason``; ``LLM.get_metrics()`` returns ``Counter`` (``name``,
``value``) and ``Vector`` (``name``, ``values``) objects (``vllm.v1.metrics.reader``), as in
vLLM's examples/offline_inference/spec_decode.py. They were not recorded from a GPU run.
"""

from types import SimpleNamespace as NS

import pytest

from specfair.backends.vllm import VLLMBackend, counter_delta, per_request_counts, spec_counters
from specfair.errors import SpecfairError


class FakeLLM:
    """One engine: echoes a fixed continuation; with a draft model, counts like vLLM."""

    instances: list = []

    def __init__(self, model, speculative_config=None, per_request=False, **kw):
        self.model, self.spec, self.kw = model, speculative_config, kw
        self.per_request = per_request
        self.c = {"n": 0, "d": 0, "a": 0, "pos": [0] * (speculative_config or {}).get(
            "num_speculative_tokens", 0)}
        FakeLLM.instances.append(self)

    def get_metrics(self):
        base = [NS(name="vllm:num_requests_running", value=0)]
        if not self.spec:
            return base
        return base + [
            NS(name="vllm:spec_decode_num_drafts", value=self.c["n"]),
            NS(name="vllm:spec_decode_num_draft_tokens", value=self.c["d"]),
            NS(name="vllm:spec_decode_num_accepted_tokens", value=self.c["a"]),
            NS(name="vllm:spec_decode_num_accepted_tokens_per_pos", values=list(self.c["pos"])),
        ]

    def generate(self, prompts, sp, use_tqdm=True):
        assert len(prompts) == 1 and sp["temperature"] == 0.0
        ids = prompts[0]["prompt_token_ids"]
        n = sp["max_tokens"]
        toks = [(ids[-1] + 1 + i) % 250 for i in range(n - 1)] + [258]  # ends on EOS
        metrics = None
        if self.spec:
            k = self.spec["num_speculative_tokens"]
            # 3 steps: accepted k, 1, 0 drafts
            acc = [k, 1, 0]
            self.c["n"] += 3
            self.c["d"] += 3 * k
            self.c["a"] += sum(acc)
            for a in acc:
                for i in range(a):
                    self.c["pos"][i] += 1
            if self.per_request:
                metrics = NS(speculative_decoding={
                    "num_spec_steps": 3, "num_draft_tokens": 3 * k,
                    "num_accepted_draft_tokens": sum(acc),
                    "acceptance_histogram": {str(a): 1 for a in acc}})
        return [NS(outputs=[NS(token_ids=toks, finish_reason="stop")], metrics=metrics)]


def _backend(tiny_pair, per_request=False, gamma=3):
    def factory(**kw):
        return FakeLLM(per_request=per_request, **kw)

    return VLLMBackend(str(tiny_pair[0]), str(tiny_pair[1]), gamma=gamma,
                       tokenizer=str(tiny_pair[0]), llm_factory=factory)


def test_engines_are_configured_like_vllm_expects(tiny_pair):
    FakeLLM.instances.clear()
    _backend(tiny_pair)
    ar, sd = FakeLLM.instances
    assert ar.spec is None
    assert sd.spec == {"method": "draft_model", "model": str(tiny_pair[1]),
                       "num_speculative_tokens": 3}
    assert sd.kw["disable_log_stats"] is False  # get_metrics() needs the stats


@pytest.mark.parametrize("per_request", [False, True])
def test_counts_per_request(tiny_pair, per_request):
    be = _backend(tiny_pair, per_request)
    for _ in range(2):  # the second request must not see the first one's counters
        res = be.generate("sd", [1, 2, 3], gamma=3, max_new_tokens=6)
        assert res.tokens == [4, 5, 6, 7, 8, 258] and res.stop_reason == "eos"
        assert (res.n_drafts, res.drafted, res.accepted) == (3, 9, 4)
        assert res.accepted_per_pos == [2, 1, 1]
        assert res.extra["counts_source"] == ("per_request" if per_request else
                                              "get_metrics_delta")
    ar = be.generate("ar", [1, 2, 3], gamma=3, max_new_tokens=6)
    assert ar.drafted == 0 and ar.tokens == res.tokens


def test_bench_with_vllm_backend(tiny_pair, tmp_path):
    from specfair.measure.bench import run_bench
    from specfair.measure.bench_summary import summarize_bench
    from specfair.tasks import Prompt

    prompts = [Prompt(id=f"p{i}", task="t", turns=("hi",), reference=None, source="x")
               for i in range(3)]
    path = run_bench(None, prompts, tmp_path, gamma=3, max_new_tokens=6,
                     backend=_backend(tiny_pair), progress=False)
    s = summarize_bench(path)
    assert s["overall"]["alpha"]["mean"] == pytest.approx(4 / 9)
    assert s["overall"]["tau"]["mean"] == pytest.approx(7 / 3)  # (4 accepted + 3 bonus) / 3
    assert s["overall"]["alpha_tested"]["mean"] == pytest.approx(4 / 6)  # 2 rejecting steps


def test_counter_helpers():
    m = [NS(name="vllm:spec_decode_num_drafts", value=2),
         NS(name="vllm:spec_decode_num_drafts", value=1),  # two label sets are summed
         NS(name="vllm:spec_decode_num_accepted_tokens_per_pos", values=[3, 1])]
    c = spec_counters(m)
    assert c["n_drafts"] == 3 and c["per_pos"] == [3, 1]
    d = counter_delta({"n_drafts": 1, "drafted": 0, "accepted": 0, "per_pos": []}, c)
    assert d["n_drafts"] == 2 and d["per_pos"] == [3, 1]
    assert per_request_counts(NS(metrics=None), 3) is None


def test_missing_vllm_is_a_clear_error(tiny_pair, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "vllm", None)
    with pytest.raises(SpecfairError, match="pip install 'vllm>=0.12'"):
        VLLMBackend(str(tiny_pair[0]), str(tiny_pair[1]))
