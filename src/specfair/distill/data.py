"""Training data for drafter distillation, from the TRAIN split only.

An :class:`Example` is prompt ids + response ids + task label; the loss covers the response
positions only. Sources:

(a) ``target``: the target's own responses (greedy by default, or sampled), generated with our
    speculative decoder (lossless, so they are exactly the target's outputs) and appended to a
    JSONL cache as they finish (``responses.jsonl``, owned by :mod:`specfair.measure.responses`);
    a rerun skips ids already cached, so generation is resumable. Multi-turn
    prompts give one example per turn, conditioned on the target's own earlier answers
    (id ``"<prompt id>"`` for turn 0, ``"<prompt id>#<turn>"`` after).
(b) ``reference``: the dataset's reference answer where present (first turn of single-turn
    prompts), tokenised and closed with the end-of-turn id (``<|im_end|>`` for Qwen instruct,
    :func:`specfair.models.eos.closing_id`) -- fixed-data distillation. The loss
    still matches the target's *distribution* on these positions (or CE on the reference tokens).
(c) on-policy drafter samples (DistillSpec) are drawn during training (``on_policy_frac``), see
    the trainer; the target scores them in the loss.

``assert_train_only`` refuses any example whose prompt is in the test split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError
from specfair.measure.responses import ensure_responses, read_responses
from specfair.models.eos import closing_id
from specfair.tasks import check_no_overlap, encode_prompt, split_of


@dataclass(frozen=True)
class Example:
    id: str
    task: str
    prompt_ids: tuple[int, ...]
    response_ids: tuple[int, ...]
    source: str = "target"  # target | reference | onpolicy
    prompt_id: str = ""  # id of the suite Prompt it comes from

    @property
    def base_id(self) -> str:
        return self.prompt_id or self.id.split("#", 1)[0]


# ---------------------------------------------------------------------- tasks module glue
def encode(tokenizer, prompt, turn: int = 0, history: Sequence = ()) -> list[int]:
    """``specfair.tasks.encode_prompt`` (history: earlier answers, text or token ids)."""
    return list(encode_prompt(tokenizer, prompt, turn=turn, history=tuple(history)))


def assert_train_only(train_prompts: Sequence, test_prompts: Sequence = ()) -> None:
    """Raise unless every prompt is in the train split and none shares an id/text with a test
    prompt (``specfair.tasks.check_no_overlap`` and ``split_of``)."""
    if test_prompts:
        check_no_overlap(list(train_prompts), list(test_prompts))
    bad = [p.id for p in train_prompts if split_of(p) != "train"]
    if bad:
        raise SpecfairError(f"distill: test-split prompts in the training data: {bad[:5]}")
    test_ids = {p.id for p in test_prompts}
    test_texts = {tuple(p.turns) for p in test_prompts}
    bad = [p.id for p in train_prompts if p.id in test_ids or tuple(p.turns) in test_texts]
    if bad:
        raise SpecfairError(f"distill: training prompts overlap the test split: {bad[:5]}")


def check_examples(examples: Iterable[Example], train_prompts: Sequence) -> None:
    """Every example must come from one of ``train_prompts`` (by prompt id)."""
    ids = {p.id for p in train_prompts}
    bad = [e.id for e in examples if e.base_id not in ids]
    if bad:
        raise SpecfairError(f"distill: examples not from the train split: {bad[:5]}")


# ---------------------------------------------------------------------- reference answers
def reference_examples(prompts: Sequence, tokenizer, target=None) -> list[Example]:
    """Reference answers closed like the target's responses (:func:`closing_id`)."""
    eos = closing_id(target, tokenizer)
    out = []
    for p in prompts:
        if not p.reference or len(p.turns) != 1:
            continue
        resp = list(tokenizer.encode(p.reference, add_special_tokens=False)) + [int(eos)]
        out.append(
            Example(f"{p.id}@ref", p.task, tuple(encode(tokenizer, p)), tuple(resp),
                    "reference", p.id)
        )
    return out


# ---------------------------------------------------------------------- target responses
def example_id(prompt_id: str, turn: int) -> str:
    return prompt_id if turn == 0 else f"{prompt_id}#{turn}"


def target_response_examples(
    prompts: Sequence,
    target,
    drafter,
    tokenizer,
    cache: str | Path,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    gamma: int = DEFAULT_GAMMA,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> list[Example]:
    """Generate (or read from ``cache``) the target's response to every turn of every prompt
    (:func:`specfair.measure.responses.ensure_responses`: the one responses cache, shared with
    ``specfair estimate``; records here have ``"source": "target"``). Sampled responses
    (``temperature > 0``) use seed ``seed + k`` for the k-th prompt. With several processes,
    process ``rank`` generates every ``world_size``-th prompt into its own shard; after a
    barrier, ``read_responses`` / :func:`examples_from_records` collect all shards.
    """
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    done = read_responses(cache)
    for k, p in enumerate(prompts):
        if k % world_size == rank:
            ensure_responses(target, tokenizer, p, cache, drafter=drafter,
                             max_new_tokens=max_new_tokens, temperature=temperature,
                             gamma=gamma, seed=seed + k, cache=done, source="target", rank=rank)
    return examples_from_records(done, prompts)


def examples_from_records(records: dict[tuple[str, int], dict], prompts: Sequence
                          ) -> list[Example]:
    """Examples for the cached responses of ``prompts`` (other ids, e.g. test ones, dropped)."""
    out = []
    for p in prompts:
        for turn in range(len(p.turns)):
            r = records.get((p.id, turn))
            if r is None or not r.get("response_ids"):
                continue
            out.append(
                Example(example_id(p.id, turn), p.task,
                        tuple(int(x) for x in r["prompt_ids"]),
                        tuple(int(x) for x in r["response_ids"]), "target", p.id)
            )
    return out


# ---------------------------------------------------------------------- splitting
def heldout_split(
    examples: Sequence[Example], per_task: int, seed: int = 0
) -> tuple[list[Example], list[Example]]:
    """``(train, heldout)``: ``per_task`` source prompts per task held back (all their
    examples), chosen by a seeded hash; a task with a single prompt is never held back."""
    import hashlib

    by_task: dict[str, list[str]] = {}
    for e in examples:
        ids = by_task.setdefault(e.task, [])
        if e.base_id not in ids:
            ids.append(e.base_id)
    held: set[str] = set()
    for _t, ids in by_task.items():
        ranked = sorted(ids, key=lambda i: hashlib.sha1(f"{seed}:{i}".encode()).hexdigest())
        held.update(ranked[: min(per_task, max(len(ids) - 1, 0))])
    return ([e for e in examples if e.base_id not in held],
            [e for e in examples if e.base_id in held])
