"""Training data for drafter distillation, from the TRAIN split only.

An :class:`Example` is prompt ids + response ids + task label; the loss covers the response
positions only. Sources:

(a) ``target``: the target's own responses (greedy by default, or sampled), generated with our
    speculative decoder (lossless, so they are exactly the target's outputs) and appended to a
    JSONL cache as they finish (``responses.jsonl``, schema of docs/CONTRACTS.md plus
    ``"source"``); a rerun skips ids already cached, so generation is resumable. Multi-turn
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

from specfair.errors import SpecfairError
from specfair.measure.io import append_jsonl, read_jsonl
from specfair.models.eos import closing_id, eos_ids, strip_eos
from specfair.tasks import encode_prompt


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
    prompt (uses ``specfair.tasks.check_no_overlap`` / ``split_of`` when available)."""
    try:
        from specfair import tasks as _tasks
    except ImportError:
        _tasks = None
    check = getattr(_tasks, "check_no_overlap", None) if _tasks else None
    if check is not None and test_prompts:
        check(list(train_prompts), list(test_prompts))
    split_of = getattr(_tasks, "split_of", None) if _tasks else None
    if split_of is not None:
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


def read_responses(path: str | Path) -> dict[tuple[str, int], dict]:
    """``{(id, turn): record}`` of a responses cache (``specfair.measure`` schema: ``"id"`` is
    the prompt id, ``"turn"`` defaults to 0) and of its ``<stem>.rank<r>.jsonl`` shards; a
    truncated last line (interrupted run) is ignored."""
    import warnings

    path = Path(path)
    recs: dict[tuple[str, int], dict] = {}
    files = [path, *sorted(path.parent.glob(path.stem + ".rank*" + path.suffix))]
    for f in files:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for r in read_jsonl(f, repair=True):
                if "id" in r and "response_ids" in r:
                    recs.setdefault((str(r["id"]), int(r.get("turn", 0))), r)
    return recs


def _generate(target, drafter, ids: list[int], tokenizer, *, max_new_tokens, temperature,
              gamma, seed) -> tuple[list[int], str]:
    import torch

    eos = eos_ids(target, tokenizer)
    try:
        from specfair.decoding import speculative_generate
    except ImportError:
        speculative_generate = None
    x = torch.tensor([ids], device=next(target.parameters()).device)
    if speculative_generate is not None and drafter is not None:
        res = speculative_generate(
            target, drafter, x, max_new_tokens=max_new_tokens, gamma=gamma,
            temperature=temperature, eos_token_id=eos, seed=seed, tokenizer=tokenizer,
        )
        return [int(t) for t in res.tokens], res.stop_reason
    # Fallback while specfair.decoding is unavailable: the target alone (same outputs).
    if seed is not None:
        torch.manual_seed(seed)
    kw = {"do_sample": temperature > 0}
    if temperature > 0:
        kw.update(temperature=temperature, top_k=0, top_p=1.0)
    with torch.no_grad():
        out = target.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=max_new_tokens,
            eos_token_id=eos, pad_token_id=tokenizer.pad_token_id, **kw
        )
    toks = [int(t) for t in out[0, len(ids):]]
    return toks, "eos" if toks and toks[-1] in eos else "max_tokens"


def target_response_examples(
    prompts: Sequence,
    target,
    drafter,
    tokenizer,
    cache: str | Path,
    *,
    max_new_tokens: int = 64,
    temperature: float = 0.0,
    gamma: int = 5,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
) -> list[Example]:
    """Generate (or read from ``cache``) the target's response to every turn of every prompt.

    Records follow ``specfair.measure``'s responses cache (``{"id", "task", "turn",
    "prompt_ids", "response_ids", "stop_reason", "max_new_tokens"}`` plus ``"temperature"`` and
    ``"source"``), so a cache written by ``specfair estimate`` can be reused and vice versa
    (greedy ones). Turn k > 0 is asked after the target's own earlier answers (eos stripped).
    With several processes, process ``rank`` generates every ``world_size``-th prompt into
    ``<cache>.rank<r>.jsonl`` (rank 0 into ``cache``); after a barrier, ``read_responses`` /
    :func:`examples_from_records` collect all shards.
    """
    cache = Path(cache)
    cache.parent.mkdir(parents=True, exist_ok=True)
    shard = cache if rank == 0 else cache.with_name(f"{cache.stem}.rank{rank}{cache.suffix}")
    done = read_responses(cache)
    eos = eos_ids(target, tokenizer)
    for k, p in enumerate(prompts):
        if k % world_size != rank:
            continue
        history: list[list[int]] = []
        for turn in range(len(p.turns)):
            rec = done.get((p.id, turn))
            if rec is not None:  # cached: it must have been made with these settings
                for key, want in (("max_new_tokens", max_new_tokens),
                                  ("temperature", temperature)):
                    if key in rec and rec[key] != want:
                        raise SpecfairError(
                            f"{cache}: {p.id} turn {turn} was generated with {key}="
                            f"{rec[key]!r}, this run asks {want!r}; use another output directory"
                        )
            else:
                ids = encode(tokenizer, p, turn, history)
                resp, stop = _generate(
                    target, drafter, ids, tokenizer, max_new_tokens=max_new_tokens,
                    temperature=temperature, gamma=gamma, seed=seed + k,
                )
                rec = {"id": p.id, "task": p.task, "turn": turn, "prompt_ids": ids,
                       "response_ids": resp, "stop_reason": stop,
                       "max_new_tokens": max_new_tokens, "temperature": temperature,
                       "source": "target"}
                append_jsonl(shard, rec)
                done[(p.id, turn)] = rec
            history.append(strip_eos(rec["response_ids"], eos))
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
