"""Cheap drafters: a shallower copy of the drafter (some decoder layers), healed by distillation.

On CPU the 0.5B drafter costs ~0.42 of a target step, which caps the speed-up at ~1/(0.42 gamma
+ 1) per accepted token; dropping half its 24 layers roughly halves that cost. The embedding,
final norm and (possibly tied) output head are copied unchanged; layer ``j`` of the new model is a
copy of layer ``layers[j]`` of the original.
"""

from __future__ import annotations

import copy

import torch

from specfair.errors import SpecfairError
from specfair.schema import ascii_int


def parse_layer_spec(spec: str | list[int] | tuple[int, ...], n_layers: int) -> list[int]:
    """``"first:K"`` -> ``0..K-1``; ``"every:N"`` -> ``0, N, 2N, ...`` plus the last layer;
    ``"0,1,5"`` -> those indices (sorted, unique). Indices must be ``< n_layers``."""
    if isinstance(spec, list | tuple):
        layers = sorted({int(i) for i in spec})
    else:
        s = str(spec).strip()
        bad = SpecfairError(f"bad cheap-drafter layer spec {spec!r} (use first:K, every:N or "
                            "0,1,5)")

        def num(text: str, least: int = 0) -> int:  # ASCII digits only
            if (n := ascii_int(text.strip())) is None or n < least:
                raise bad
            return n

        if s.startswith("first:"):
            layers = list(range(num(s.split(":", 1)[1])))
        elif s.startswith("every:"):
            n = num(s.split(":", 1)[1], least=1)
            layers = list(range(0, n_layers, n)) if n_layers < 10**6 else [0]
            if n_layers < 10**6 and layers[-1] != n_layers - 1:
                layers.append(n_layers - 1)
        else:
            layers = sorted({num(x) for x in s.split(",") if x.strip()})
    if not layers or layers[0] < 0 or layers[-1] >= n_layers:
        raise SpecfairError(f"cheap-drafter layers {spec!r} do not fit a {n_layers}-layer model")
    return layers


def make_cheap_drafter(model, layers: str | list[int]):
    """A new model of the same class with only ``layers`` of ``model`` (weights copied)."""
    cfg = model.config
    n = int(cfg.num_hidden_layers)
    keep = parse_layer_spec(layers, n)
    new_cfg = copy.deepcopy(cfg)
    new_cfg.num_hidden_layers = len(keep)
    if getattr(new_cfg, "layer_types", None) is not None:
        new_cfg.layer_types = [cfg.layer_types[i] for i in keep]
    if getattr(new_cfg, "max_window_layers", None) is not None:
        new_cfg.max_window_layers = min(int(cfg.max_window_layers), len(keep))
    new = type(model)(new_cfg).to(dtype=model.dtype)
    src = model.state_dict()
    out = {}
    prefix = "model.layers."
    for k in new.state_dict():
        if k.startswith(prefix):
            j, rest = k[len(prefix) :].split(".", 1)
            out[k] = src[f"{prefix}{keep[int(j)]}.{rest}"]
        else:
            out[k] = src[k]
    new.load_state_dict(out, strict=True)
    if getattr(cfg, "tie_word_embeddings", False):
        new.tie_weights()
    new.generation_config = copy.deepcopy(model.generation_config)
    new.config.specfair_cheap_layers = keep
    with torch.no_grad():
        new.eval()
    return new
