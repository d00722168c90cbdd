"""The target's responses cache, ``responses.jsonl``: its one owner (schema, reading, writing,
resuming). Used by the estimate (teacher forcing), the experiment's bulk fill, distillation and
the study (test answers; training text, including the drafter's, ``source="drafter"``).

One record per (prompt, turn)::

    {"id": prompt id, "task", "turn": k, "prompt_ids", "response_ids", "stop_reason",
     "max_new_tokens", "temperature",
     "source": "generated" | "bench" | "batched" | "target" | "drafter"}

(plus ``"reused": true`` on records copied from another cache). ``prompt_ids`` of turn k > 0
hold the earlier turns with the target's own answers (end-of-sequence id stripped, see
:func:`specfair.models.eos.strip_eos`). Records are appended as they finish, so a run resumes
where it stopped; a record made with another ``max_new_tokens`` or ``temperature`` is refused.
With several processes, process r > 0 writes ``responses.rank<r>.jsonl`` next to the file;
:func:`read_responses` reads them all.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

from specfair.backends.hf import hf_generate
from specfair.decoding.batched import batched_greedy
from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError
from specfair.measure.bench import load_bench_records, split_turns
from specfair.measure.io import append_jsonl, read_jsonl
from specfair.measure.progress import progress_bar
from specfair.models.eos import eos_ids, strip_eos
from specfair.tasks import encode_prompt

RESPONSES_FILE = "responses.jsonl"


def response_record(prompt, turn: int, prompt_ids, response_ids, stop_reason, *,
                    max_new_tokens: int, temperature: float, source: str) -> dict:
    """One record of the schema above."""
    return {"id": prompt.id, "task": prompt.task, "turn": turn,
            "prompt_ids": [int(t) for t in prompt_ids],
            "response_ids": [int(t) for t in response_ids], "stop_reason": stop_reason,
            "max_new_tokens": max_new_tokens, "temperature": temperature, "source": source}


def write_response(path: str | Path, record: dict) -> None:
    """Append one record (durably: flushed and fsynced)."""
    append_jsonl(path, record)


def shard_path(path: str | Path, rank: int) -> Path:
    """Where process ``rank`` writes (rank 0: ``path`` itself)."""
    path = Path(path)
    return path if rank == 0 else path.with_name(f"{path.stem}.rank{rank}{path.suffix}")


def read_responses(path: str | Path) -> dict[tuple[str, int], dict]:
    """``{(id, turn): record}`` of a cache and its ``.rank<r>`` shards (first record per key;
    a truncated last line is repaired, records without ``response_ids`` skipped)."""
    path = Path(path)
    recs: dict[tuple[str, int], dict] = {}
    shards = sorted(path.parent.glob(path.stem + ".rank*" + path.suffix))
    for f in [path, *shards]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for r in read_jsonl(f, repair=True):
                if "id" in r and "response_ids" in r:
                    recs.setdefault((str(r["id"]), int(r.get("turn", 0))), r)
    return recs


def reuse_responses(src: str | Path, dst: str | Path, ids: set[str], *, max_new_tokens: int,
                    temperature: float) -> int:
    """Copy into ``dst`` the records of ``src`` for the prompt ``ids`` that ``dst`` lacks and
    that were made with these settings (marked ``"reused": true``); returns how many."""
    done, n = read_responses(dst), 0
    want = {"max_new_tokens": max_new_tokens, "temperature": temperature}
    for key, rec in read_responses(src).items():
        if key not in done and key[0] in ids and all(rec.get(k, v) == v for k, v in want.items()):
            write_response(dst, {**rec, "source": "target", "reused": True})
            n += 1
    return n


def check_cached(record: dict, path, turn: int, **want) -> None:
    """Refuse a cached record made with other settings (``want``: max_new_tokens, temperature;
    a record without the field is taken as matching)."""
    for key, value in want.items():
        if key in record and record[key] != value:
            raise SpecfairError(
                f"{path}: response {record['id']} turn {turn} was generated with {key}="
                f"{record[key]!r}, this run asks {value!r}; use another output directory")


def bench_greedy_answers(bench_path: str | Path, max_new_tokens: int) -> dict[str, dict]:
    """``{id: AR record}`` of a ``bench.jsonl`` made greedily (temperature 0) with the same
    ``max_new_tokens``: its answers are the target's greedy responses, reusable here (empty if
    the file is absent or made otherwise)."""
    path = Path(bench_path)
    if not path.exists():
        return {}
    return {
        r["id"]: r
        for r in load_bench_records(path)
        if r.get("mode") == "ar"
        and r.get("temperature") == 0.0
        and r.get("max_new_tokens") == max_new_tokens
        and "turn_lengths" in r
    }


def generate_response(target, drafter, tokenizer, ids: list[int], *, max_new_tokens: int,
                      temperature: float = 0.0, gamma: int = DEFAULT_GAMMA,
                      seed: int | None = None):
    """The target's response (a ``GenerationResult``): speculative decoding (lossless) when a
    drafter is given, else the target alone (:func:`specfair.backends.hf.hf_generate`: it stops
    at :func:`eos_ids`)."""
    return hf_generate("ar" if drafter is None else "sd", target, drafter, tokenizer, ids,
                       gamma=gamma, max_new_tokens=max_new_tokens, temperature=temperature,
                       top_p=1.0, top_k=0, seed=seed)


def ensure_responses(
    target, tokenizer, prompt, cache_path: str | Path, *, drafter=None,
    max_new_tokens: int = 128, temperature: float = 0.0, gamma: int = DEFAULT_GAMMA,
    seed: int | None = None, cache: dict | None = None, bench_ar: dict[str, dict] | None = None,
    source: str = "generated", rank: int = 0,
) -> list[dict]:
    """The records of every turn of ``prompt``, generating and appending the missing ones.

    Turn k > 0 is asked after the target's own earlier answers. ``cache`` (from
    :func:`read_responses`) avoids re-reading the file and is updated. ``bench_ar`` (from
    :func:`bench_greedy_answers`) supplies answers a greedy bench run already produced.
    ``rank``: the process, which writes its own shard (see :func:`shard_path`).
    """
    cache_path = Path(cache_path)
    if cache is None:
        cache = read_responses(cache_path)
    eos = eos_ids(target, tokenizer)
    out: list[dict] = []
    history: list[list[int]] = []
    for turn in range(len(prompt.turns)):
        rec = cache.get((prompt.id, turn))
        if rec is not None:
            check_cached(rec, cache_path, turn, max_new_tokens=max_new_tokens,
                         temperature=temperature)
        else:
            ids = encode_prompt(tokenizer, prompt, turn=turn, history=history)
            ar = (bench_ar or {}).get(prompt.id)
            if ar is not None:  # the greedy AR answer of a bench run with these settings
                toks, stop, src = split_turns(ar)[turn], ar.get("stop_reason"), "bench"
            else:
                res = generate_response(target, drafter, tokenizer, ids,
                                        max_new_tokens=max_new_tokens, temperature=temperature,
                                        gamma=gamma, seed=seed)
                toks, stop, src = res.tokens, res.stop_reason, source
            rec = response_record(prompt, turn, ids, toks, stop, max_new_tokens=max_new_tokens,
                                  temperature=temperature, source=src)
            write_response(shard_path(cache_path, rank), rec)
            cache[(prompt.id, turn)] = rec
        out.append(rec)
        history.append(strip_eos(rec["response_ids"], eos))
    return out


def fill_responses_batched(
    model,
    tokenizer,
    prompts: Sequence,
    cache_path: str | Path,
    *,
    max_new_tokens: int,
    prompt_ids: Sequence[Sequence[int]] | None = None,
    batch_size: int = 16,
    progress: bool = True,
    label: str = "responses (batched)",
    source: str = "batched",
) -> int:
    """Generate the missing first-turn greedy answers of ``model`` (the target, or for the
    study's training text the drafter, ``source="drafter"``) to ``prompts`` into ``cache_path``
    (appended batch by batch, so an interrupted fill resumes); returns how many were added.
    ``prompt_ids``: the token ids to answer (default: each prompt's chat encoding); a cached
    record of another prompt or ``max_new_tokens`` is refused. Later turns of multi-turn prompts
    are left to :func:`ensure_responses`."""
    cache_path = Path(cache_path)
    ids = ([list(i) for i in prompt_ids] if prompt_ids is not None
           else [encode_prompt(tokenizer, p) for p in prompts])
    have = read_responses(cache_path)
    todo = []
    for k, p in enumerate(prompts):
        rec = have.get((p.id, 0))
        if rec is None:
            todo.append(k)
            continue
        check_cached(rec, cache_path, 0, max_new_tokens=max_new_tokens, temperature=0.0)
        if prompt_ids is not None and rec.get("prompt_ids") != ids[k]:
            raise SpecfairError(f"{cache_path}: response {p.id} answers another prompt (other "
                                "settings, or an older specfair); use another directory")
    if not todo:
        return 0
    eos = eos_ids(model, tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    with progress_bar(len(todo), label, enabled=progress) as advance:

        def write(idx, results):
            for i, (toks, stop) in zip(idx, results, strict=True):
                k = todo[i]
                write_response(cache_path, response_record(
                    prompts[k], 0, ids[k], toks, stop, max_new_tokens=max_new_tokens,
                    temperature=0.0, source=source))
                advance()

        batched_greedy(model, [ids[k] for k in todo], max_new_tokens=max_new_tokens,
                       eos_token_id=eos, pad_token_id=pad, batch_size=batch_size,
                       on_batch=write)  # fmt: skip
    return len(todo)
