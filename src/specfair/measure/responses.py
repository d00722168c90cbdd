"""Fill a responses cache (``responses.jsonl``, the schema of :mod:`specfair.measure.estimate`)
with the target's greedy answers to the first turn of many prompts, in batches."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from specfair.decoding.batched import batched_greedy
from specfair.measure.io import append_jsonl, read_jsonl
from specfair.measure.progress import progress_bar
from specfair.models.eos import eos_ids
from specfair.tasks import encode_prompt


def fill_responses_batched(
    target,
    tokenizer,
    prompts: Sequence,
    cache_path: str | Path,
    *,
    max_new_tokens: int,
    batch_size: int = 16,
    progress: bool = True,
) -> int:
    """Generate the missing first-turn greedy answers of ``prompts`` into ``cache_path``
    (appended batch by batch, so an interrupted fill resumes); returns how many were added.
    Later turns of multi-turn prompts are left to the one-at-a-time path."""
    cache_path = Path(cache_path)
    have = {(r.get("id"), int(r.get("turn", 0))) for r in read_jsonl(cache_path, repair=True)}
    todo = [p for p in prompts if (p.id, 0) not in have]
    if not todo:
        return 0
    ids = [encode_prompt(tokenizer, p) for p in todo]
    eos = eos_ids(target, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    with progress_bar(len(todo), "responses (batched)", enabled=progress) as advance:

        def write(idx, results):
            for i, (toks, stop) in zip(idx, results, strict=True):
                append_jsonl(cache_path, {
                    "id": todo[i].id, "task": todo[i].task, "turn": 0, "prompt_ids": ids[i],
                    "response_ids": toks, "stop_reason": stop, "max_new_tokens": max_new_tokens,
                    "temperature": 0.0, "source": "batched",
                })  # fmt: skip
            for _ in idx:
                advance()

        batched_greedy(target, ids, max_new_tokens=max_new_tokens, eos_token_id=eos,
                       pad_token_id=pad, batch_size=batch_size, on_batch=write)  # fmt: skip
    return len(todo)
