"""Cheap drafter: the selected layers (and embeddings/norm/head) are copied exactly."""

from __future__ import annotations

import pytest
import torch
from distill_helpers import load

from specfair.distill.cheap import make_cheap_drafter, parse_layer_spec
from specfair.errors import SpecfairError


def test_layer_specs():
    assert parse_layer_spec("first:3", 8) == [0, 1, 2]
    assert parse_layer_spec("every:3", 8) == [0, 3, 6, 7]
    assert parse_layer_spec("5,1,1", 8) == [1, 5]
    for bad in ("first:9", "every:0", "x", "8"):
        with pytest.raises(SpecfairError):
            parse_layer_spec(bad, 8)


def test_cheap_drafter_copies_layers(tiny_pair):
    big = load(tiny_pair[0])  # the 2-layer model
    for spec, keep in (("first:1", [0]), ("1", [1])):
        small = make_cheap_drafter(big, spec)
        assert small.config.num_hidden_layers == 1 and len(small.model.layers) == 1
        assert small.config.layer_types == [big.config.layer_types[i] for i in keep]
        sd, bd = small.state_dict(), big.state_dict()
        for k, v in sd.items():
            src = k.replace("model.layers.0.", f"model.layers.{keep[0]}.")
            assert torch.equal(v, bd[src]), k
        # same output as running the kept layer of the big model by hand
        x = torch.tensor([[257, 65, 66, 67, 258]])
        with torch.no_grad():
            h = big.model.embed_tokens(x)
            pos = torch.arange(x.shape[1])[None]
            pe = big.model.rotary_emb(h, pos)
            h = big.model.layers[keep[0]](h, position_embeddings=pe, attention_mask=None,
                                          position_ids=pos)
            h = h[0] if isinstance(h, tuple) else h
            want = big.lm_head(big.model.norm(h))
            got = small(x).logits
        assert torch.allclose(got, want, atol=1e-5)
