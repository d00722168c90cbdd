"""``specfair generate``: apply the chat template and stream a greedy answer."""

from __future__ import annotations

import sys

import torch

from specfair.errors import SpecfairError
from specfair.models.load import (
    check_max_new_tokens,
    load_model,
    load_tokenizer,
    resolve_device,
    resolve_dtype,
)


def stream_greedy(
    model_spec, prompt: str, max_new_tokens=128, dtype="auto", device="auto", kernels="auto"
):
    if not prompt.strip():
        raise SpecfairError("empty prompt")
    check_max_new_tokens(max_new_tokens, model_spec)
    resolve_dtype(dtype, resolve_device(device))
    tok = load_tokenizer(model_spec)
    model = load_model(model_spec, dtype, device, kernels)
    limit = getattr(model.config, "max_position_embeddings", None)  # GGUF: known only now
    n_prompt = len(tok.apply_chat_template([{"role": "user", "content": prompt}],
                                           add_generation_prompt=True, tokenize=True)["input_ids"]
                   if getattr(tok, "chat_template", None) else tok(prompt)["input_ids"])
    if limit is not None and n_prompt + max_new_tokens > limit:
        raise SpecfairError(f"prompt ({n_prompt} tokens) + --max-new-tokens ({max_new_tokens}) "
                            f"does not fit the context of {model_spec} ({limit} tokens)")
    return smoke_answer(model, tok, prompt, max_new_tokens)


def smoke_answer(model, tokenizer, prompt: str, max_new_tokens: int = 40, stream: bool = True):
    """The greedy answer of a loaded ``model`` to ``prompt`` (chat template applied), streamed
    to stdout as it is generated; returns the decoded text."""
    from transformers import TextStreamer

    if getattr(tokenizer, "chat_template", None):
        ids = tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True,
            return_tensors="pt", return_dict=True,
        )["input_ids"]  # fmt: skip
    else:  # a base model without a chat template: the raw prompt
        ids = tokenizer(prompt, return_tensors="pt")["input_ids"]
    ids = ids.to(model.device)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    with torch.inference_mode():
        out = model.generate(
            ids, max_new_tokens=max_new_tokens, do_sample=False,
            streamer=streamer if stream else None, attention_mask=torch.ones_like(ids),
        )  # fmt: skip
    sys.stdout.flush()
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)
