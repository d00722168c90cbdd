"""A decoding request checked before any model runs: the prompt as a [1, T] tensor, the end
of sequence ids, ``max_new_tokens`` within every model's context."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from specfair.errors import SpecfairError
from specfair.models.eos import as_ids, eos_ids


def prompt_tensor(input_ids, device: torch.device) -> torch.Tensor:
    if isinstance(input_ids, torch.Tensor):
        ids = input_ids
        if ids.dim() == 2:
            if ids.shape[0] != 1:
                raise SpecfairError(f"batch size must be 1 for now, got {ids.shape[0]}")
            ids = ids[0]
        if ids.dim() != 1:
            raise SpecfairError(f"input_ids must be 1-D or [1, T], got shape {tuple(ids.shape)}")
        if ids.is_floating_point() or ids.is_complex():
            raise SpecfairError("input_ids must hold integer token ids")
        ids = ids.to(device=device, dtype=torch.long)
    elif isinstance(input_ids, Sequence) and not isinstance(input_ids, str | bytes):
        ids = torch.tensor(list(input_ids), dtype=torch.long, device=device)
    else:
        raise SpecfairError(f"input_ids must be a list of ints or a LongTensor, got {input_ids!r}")
    if ids.numel() == 0:
        raise SpecfairError("empty prompt: input_ids has no tokens")
    return ids.view(1, -1)


def eos_set(model, eos_token_id) -> frozenset[int]:
    """``eos_token_id`` if given, else the model's rule (:func:`specfair.models.eos.eos_ids`)."""
    return frozenset(eos_ids(model) if eos_token_id is None else as_ids(eos_token_id))


def context_limit(model) -> int | None:
    cfg = model.config
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return getattr(cfg, "max_position_embeddings", None)


def check_request(models, prompt_len: int, max_new_tokens) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise SpecfairError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 1:
        raise SpecfairError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    for role, model in models:
        limit = context_limit(model)
        if limit is not None and prompt_len + max_new_tokens > limit:
            raise SpecfairError(
                f"prompt ({prompt_len} tokens) + max_new_tokens ({max_new_tokens}) exceeds the "
                f"{role}'s context of {limit} tokens"
            )
