import pytest
import torch
from transformers.generation.logits_process import (
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from specfair.decoding import SamplingParams, fit_vocab, logits_to_probs, sample
from specfair.errors import SpecfairError


def test_probs_are_distributions_and_temperature_zero_is_argmax():
    logits = torch.randn(3, 5, 50, generator=torch.Generator().manual_seed(0))
    probs = logits_to_probs(logits, temperature=0.7, top_k=10, top_p=0.9)
    assert torch.allclose(probs.sum(-1), torch.ones(3, 5))
    assert ((probs > 0).sum(-1) <= 10).all()
    onehot = logits_to_probs(logits, temperature=0.0)
    assert torch.equal(onehot.argmax(-1), logits.argmax(-1)) and torch.equal(
        onehot.sum(-1), torch.ones(3, 5)
    )
    # The limit: a small temperature gives (nearly) the one-hot.
    assert torch.allclose(logits_to_probs(logits, temperature=1e-4), onehot, atol=1e-6)


@pytest.mark.parametrize(
    "temperature,top_k,top_p", [(1.0, 0, 1.0), (0.7, 5, 1.0), (1.3, 0, 0.8), (0.9, 20, 0.5)]
)
def test_warpers_match_hugging_face(temperature, top_k, top_p):
    logits = torch.randn(4, 64, generator=torch.Generator().manual_seed(1)) * 3
    hf = logits.clone()
    for warper in [
        TemperatureLogitsWarper(temperature),
        *([TopKLogitsWarper(top_k)] if top_k else []),
        *([TopPLogitsWarper(top_p)] if top_p < 1 else []),
    ]:
        hf = warper(None, hf)
    assert torch.allclose(
        logits_to_probs(logits, temperature, top_k, top_p), hf.softmax(-1), atol=1e-6
    )


def test_probs_upcast_low_precision_and_keep_float64():
    logits = torch.randn(2, 10)
    assert logits_to_probs(logits.bfloat16(), 1.0).dtype == torch.float32
    assert logits_to_probs(logits.double(), 1.0).dtype == torch.float64


def test_fit_vocab_pads_with_zero_probability_and_cuts():
    logits = torch.randn(1, 6)
    padded = fit_vocab(logits, 9)
    assert padded.shape == (1, 9) and torch.isinf(padded[:, 6:]).all()
    probs = logits_to_probs(padded, 1.0)
    assert torch.equal(probs[:, 6:], torch.zeros(1, 3))
    assert torch.allclose(probs[:, :6], logits.softmax(-1))
    assert torch.equal(fit_vocab(logits, 4), logits[:, :4])
    assert fit_vocab(logits, 6) is logits


def test_sample_is_seeded_and_follows_probs():
    probs = torch.tensor([[0.0, 0.25, 0.75]]).expand(20000, 3)
    a = sample(probs, torch.Generator().manual_seed(3))
    b = sample(probs, torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == (20000,)
    freq = torch.bincount(a, minlength=3) / a.numel()
    assert freq[0] == 0 and abs(freq[2].item() - 0.75) < 0.02


@pytest.mark.parametrize(
    "kwargs", [dict(temperature=-1.0), dict(top_k=-1), dict(top_p=0.0), dict(top_p=1.5)]
)
def test_bad_sampling_params(kwargs):
    with pytest.raises(SpecfairError):
        SamplingParams(**kwargs)
