import torch

from specfair.decoding import autoregressive_generate
from specfair.decoding.batched import batched_greedy
from specfair.models import load_model


def test_batched_greedy_equals_one_at_a_time(tiny_pair):
    target = load_model(tiny_pair[0], dtype="float32")
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 256, (n,), generator=g).tolist() for n in (3, 9, 5, 12, 7)]
    eos = 258
    seen = []
    got = batched_greedy(target, prompts, max_new_tokens=10, eos_token_id=eos, pad_token_id=256,
                         batch_size=2, on_batch=lambda idx, res: seen.extend(idx))
    assert sorted(seen) == list(range(len(prompts)))
    for p, (toks, stop) in zip(prompts, got, strict=True):
        ref = autoregressive_generate(target, p, max_new_tokens=10, eos_token_id=eos)
        assert toks == ref.tokens and stop == ref.stop_reason
