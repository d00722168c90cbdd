"""``autoregressive_generate(generator=...)`` gives DistillSpec's on-policy samples: the same
tokens, and the same generator state afterwards, as the private loop the trainer used before
(``specfair.distill.student.sample_drafter``, copied below as the reference), on a LoRA-wrapped
drafter with trainable adapters and outside ``no_grad``, as the trainer calls it."""

import copy

import pytest
import torch
from peft import LoraConfig, get_peft_model
from transformers import DynamicCache

from specfair.decoding import autoregressive_generate
from specfair.distill.student import base_lm
from specfair.errors import SpecfairError

EOS = 258
PROMPTS = [
    torch.randint(0, 259, (n,), generator=torch.Generator().manual_seed(100 + n)).tolist()
    for n in (1, 4, 9, 17)
]


def reference_sample_drafter(model, prompt_ids, n, temperature, generator, eos, device):
    """The loop of ``specfair.distill.student.sample_drafter`` (commit aaf7056, since removed),
    verbatim."""
    lm = base_lm(model)
    V = lm.get_output_embeddings().weight.shape[0]
    cache = DynamicCache(config=lm.config)
    x = torch.tensor([list(prompt_ids)], device=device)
    logits = lm(input_ids=x, cache=cache, use_cache=True, logits_to_keep=1).logits[0, -1]
    toks: list[int] = []
    for _ in range(n):
        probs = torch.softmax(logits.float()[:V] / max(temperature, 1e-6), -1).cpu()
        t = int(torch.multinomial(probs, 1, generator=generator))
        toks.append(t)
        if t in eos:
            break
        logits = lm(input_ids=torch.tensor([[t]], device=device), cache=cache,
                    use_cache=True).logits[0, -1]
    return toks


def via_decoding(model, prompt_ids, n, temperature, generator, eos, device):
    """What the trainer's ``_on_policy`` calls (``device`` is the model's own)."""
    return autoregressive_generate(base_lm(model), prompt_ids, max_new_tokens=n,
                                   temperature=max(temperature, 1e-6), eos_token_id=eos,
                                   generator=generator).tokens


@pytest.fixture(scope="module", params=[torch.float32, torch.bfloat16], ids=["f32", "bf16"])
def student(noisy_pair, request):
    """A LoRA-wrapped copy of the drafter (vocabulary 272) with non-zero adapters."""
    drafter = copy.deepcopy(noisy_pair[1]).to(request.param)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"],
                     init_lora_weights=False, task_type="CAUSAL_LM")
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = get_peft_model(drafter, cfg).to(request.param)
    model.eval()
    assert any(p.requires_grad for p in model.parameters())
    return model


@pytest.mark.parametrize("temperature", [1.0, 0.6, 0.0])
@pytest.mark.parametrize("eos", [[], [EOS], list(range(0, 272, 9))], ids=["none", "eos", "many"])
def test_on_policy_samples_equal_sample_drafter(student, temperature, eos):
    """Several prompts on one generator with draws in between, as ``trainer._on_policy`` does."""
    runs = {}
    for name, fn in [("ref", reference_sample_drafter), ("new", via_decoding)]:
        g = torch.Generator().manual_seed(1234)
        out = []
        for i, prompt in enumerate(PROMPTS * 2):
            float(torch.rand((), generator=g))
            out.append(fn(student, tuple(prompt), 1 + 7 * i, temperature, g, eos, "cpu"))
        runs[name] = (out, g.get_state())
    assert runs["new"][0] == runs["ref"][0]
    assert torch.equal(runs["new"][1], runs["ref"][1])
    if len(eos) > 1:  # the stopping rule was exercised both ways
        lengths = [(len(t), 1 + 7 * i) for i, t in enumerate(runs["ref"][0])]
        assert any(n < limit for n, limit in lengths) and any(n == limit for n, limit in lengths)


def test_seed_and_generator_are_exclusive(noisy_pair):
    target, _ = noisy_pair
    with pytest.raises(SpecfairError, match="not both"):
        autoregressive_generate(target, [1, 2], max_new_tokens=2, temperature=1.0, seed=0,
                                generator=torch.Generator())


def test_generator_equals_seed(noisy_pair):
    """A generator seeded with s gives what ``seed=s`` gives."""
    target, _ = noisy_pair
    kw = dict(max_new_tokens=12, temperature=0.8, top_k=40)
    by_seed = autoregressive_generate(target, PROMPTS[1], seed=5, **kw).tokens
    g = torch.Generator().manual_seed(5)
    assert autoregressive_generate(target, PROMPTS[1], generator=g, **kw).tokens == by_seed
