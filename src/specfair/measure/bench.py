"""Wall-clock benchmark: autoregressive (AR) vs speculative (SD) decoding, prompt by prompt.

Protocol (per prompt, in suite order):

1. the AR run, then the SD run — always in this order, with the same prompt, ``max_new_tokens``,
   temperature and seed. (A fixed order keeps multi-turn contexts simple; drift between the two
   runs of a prompt is seconds apart, so any order effect is small and identical across tasks.)
2. Multi-turn prompts (MT-bench style): turn k > 0 is asked after the *AR run's own* answers to
   the earlier turns, for both modes, so both see exactly the same context. Under greedy
   decoding SD is lossless and its answers are the same anyway. Tokens, times, draft counts are
   summed over turns; ``accepted_lengths`` are concatenated.
3. Before the first timed run, one short untimed AR and SD generation warms up the kernels.

Each finished (prompt, mode) record is appended to ``bench.jsonl`` (flushed and fsynced). A
rerun into the same directory skips the (id, mode) pairs already there — never duplicating —
after dropping a truncated last line left by a crash; it refuses to mix different settings.
Record fields: see ``docs/CONTRACTS.md`` (measure).
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Sequence
from pathlib import Path

from specfair.backends.base import add_engine_counts
from specfair.backends.hf import hf_generate
from specfair.decoding.ngram import parse_proposer, uses_drafter
from specfair.decoding.policy import DraftingPolicy, parse_policy
from specfair.decoding.proposer import as_proposer, draft_for, route_of
from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError
from specfair.measure.io import append_jsonl, read_jsonl
from specfair.measure.progress import progress_bar
from specfair.models.load import Pair
from specfair.rundir import check_settings, run_settings
from specfair.tasks import encode_prompt

BENCH_FILE = "bench.jsonl"
BENCH_SUMMARY_FILE = "bench_summary.json"
MODES = ("ar", "sd")


def unpack_models(pair_or_models, tokenizer=None):
    """``(target, drafter, tokenizer, target_label, drafter_label)`` from a
    :class:`specfair.models.Pair` or a ``(target, drafter, tokenizer)`` tuple."""
    if isinstance(pair_or_models, Pair):
        p = pair_or_models
        return p.target, p.drafter, tokenizer or p.tokenizer, p.target_name, p.drafter_name
    try:
        target, drafter, *rest = pair_or_models
    except (TypeError, ValueError) as e:
        raise SpecfairError("expected a Pair or a (target, drafter, tokenizer) tuple") from e
    tok = tokenizer or (rest[0] if rest else None)
    return target, drafter, tok, None, None


def _label(model, given: str | None) -> str:
    if given:
        return given
    path = getattr(getattr(model, "config", None), "_name_or_path", None)
    return str(path) if path else type(model).__name__


def model_dtype(model) -> str:
    """``"float32"``, ``"bfloat16"``...: the dtype of ``model``'s parameters."""
    import torch

    try:
        return str(next(model.parameters()).dtype).replace("torch.", "")
    except (StopIteration, AttributeError):
        return str(getattr(model, "dtype", torch.float32)).replace("torch.", "")


def prompt_seed(seed: int, prompt_id: str, turn: int = 0) -> int:
    """Per-prompt sampling seed, the same for both modes (stable across runs)."""
    return (seed * 1_000_003 + zlib.crc32(prompt_id.encode()) + 7919 * turn) % (2**31 - 1)


def _generate(
    mode, target, drafter, tokenizer, ids, *, gamma, max_new_tokens, temperature, top_p, top_k,
    seed, backend=None, draft_threshold=0.0, proposer="model", index=None,
):  # fmt: skip
    kw = dict(gamma=gamma, max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
              top_k=top_k, seed=seed)
    if backend is not None:  # another engine (specfair.backends): same call, same result fields
        own = getattr(backend, "proposer", "model")  # what drafts in the engine
        if draft_threshold or proposer != own or not isinstance(gamma, int):
            raise SpecfairError(f"backend {backend.name}: only --policy fixed:N and --proposer "
                                f"{own} (the drafting policies run in the hf backend)")
        return backend.generate(mode, ids, **kw)
    return hf_generate(mode, target, drafter, tokenizer, ids, draft_threshold=draft_threshold,
                       proposer=proposer, index=index, **kw)  # fmt: skip


def run_prompt(
    mode: str,
    target,
    drafter,
    tokenizer,
    prompt,
    *,
    history: Sequence[Sequence[int]] | None = None,
    gamma=DEFAULT_GAMMA,
    max_new_tokens: int = 128,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    seed: int = 0,
    backend=None,
    draft_threshold: float = 0.0,
    proposer: str = "model",
    index=None,
) -> dict:
    """Run every turn of ``prompt`` in ``mode`` and return the summed record (without the
    run-settings fields). ``history[k]`` are the tokens to use as the answer to turn k when
    asking later turns; ``None`` = this run's own answers. ``backend``: a
    :class:`specfair.backends.Backend` to generate with instead of ``target``/``drafter``.
    ``gamma``: an int or a :class:`specfair.decoding.GammaPolicy` (hf only, as
    ``draft_threshold``, ``proposer`` and ``index``: see
    :func:`specfair.decoding.speculative_generate`)."""
    if mode not in MODES:
        raise SpecfairError(f"mode must be one of {MODES}, got {mode!r}")
    rec = {
        "new_tokens": 0,
        "wall_s": 0.0,
        "prefill_s": 0.0,
        "drafted": 0,
        "accepted": 0,
        "rejections": 0,
        "accepted_lengths": [],
        "tokens": [],
        "turn_lengths": [],
        "stop_reason": None,
    }
    own: list[list[int]] = []
    for turn in range(len(prompt.turns)):
        hist = own if history is None else [list(h) for h in history[:turn]]
        ids = encode_prompt(tokenizer, prompt, turn=turn, history=hist)
        res = _generate(mode, target, drafter, tokenizer, ids, gamma=gamma,
                        max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                        top_k=top_k, seed=prompt_seed(seed, prompt.id, turn), backend=backend,
                        draft_threshold=draft_threshold, proposer=proposer, index=index)
        own.append(_add_turn(rec, mode, res))
    rec["tokens_per_s"] = rec["new_tokens"] / rec["wall_s"] if rec["wall_s"] > 0 else None
    return rec


def _add_turn(rec: dict, mode: str, res) -> list[int]:
    """Add one turn's result to the summed record ``rec``; returns the turn's tokens."""
    toks = [int(t) for t in res.tokens]
    rec["new_tokens"] += len(toks)
    rec["wall_s"] += float(res.wall_s)
    rec["prefill_s"] += float(res.prefill_s or 0.0)
    rec["tokens"] += toks
    rec["turn_lengths"].append(len(toks))
    rec["stop_reason"] = res.stop_reason
    if mode == "sd" and getattr(res, "steps", None) is None:  # an engine's counts
        add_engine_counts(rec, res)
    elif mode == "sd":
        # steps that drafted (a step may draft nothing near max_new_tokens)
        steps = [s for s in res.steps if s.drafted > 0]
        rec["drafted"] += sum(int(s.drafted) for s in steps)
        rec["accepted"] += sum(int(s.accepted) for s in steps)
        rec["accepted_lengths"] += [int(s.accepted_len) for s in steps]
        rec["rejections"] += sum(1 for s in steps if s.accepted < s.drafted)
        by = rec.setdefault("by_proposer", {})
        for name, counts in res.by_proposer().items():
            for k, v in counts.items():
                by.setdefault(name, {}).setdefault(k, 0)
                by[name][k] += v
    return toks


def split_turns(record: dict) -> list[list[int]]:
    """The per-turn answers of a bench record (``tokens`` split by ``turn_lengths``)."""
    out, i = [], 0
    for n in record.get("turn_lengths", [len(record["tokens"])]):
        out.append(record["tokens"][i : i + n])
        i += n
    return out


def load_bench_records(path: str | Path, *, repair: bool = False) -> list[dict]:
    """The records of a ``bench.jsonl`` (first record per (id, mode); a truncated last line
    is ignored, and with ``repair`` removed from the file)."""
    seen, out = set(), []
    for r in read_jsonl(path, repair=repair):
        key = (r.get("id"), r.get("mode"))
        if key not in seen:
            seen.add(key)
            out.append(r)
    return out


def run_bench(
    pair_or_models, prompts: Sequence, out_dir: str | Path, *, gamma: int = DEFAULT_GAMMA,
    max_new_tokens: int = 128, temperature: float = 0.0, top_p: float = 1.0, top_k: int = 0,
    drafter_label: str | None = None, target_label: str | None = None, tokenizer=None,
    seed: int = 0, warmup: bool = True, progress: bool = True,
    extra_settings: dict | None = None, backend=None, policy: DraftingPolicy | None = None,
    proposer: str = "model",
    index=None,
) -> Path:  # fmt: skip
    """Benchmark AR vs SD on ``prompts``, appending to ``out_dir/bench.jsonl``; returns its path.

    ``pair_or_models``: a :class:`specfair.models.Pair` or ``(target, drafter, tokenizer)``;
    the drafter may be any causal-LM module (fine-tuned, PEFT-wrapped...) or a proposer
    (:mod:`specfair.decoding.proposer`: each prompt drafted by ``draft_for(proposer, prompt)``;
    a proposer that routes by a task classifier adds ``route`` to its SD records).
    Resumable (see the module docstring). Every record carries a ``settings`` block (these
    arguments, the target's dtype, the specfair version and ``extra_settings``, e.g. the suite
    and its data hash); a file written with other settings is refused
    (:func:`specfair.rundir.check_settings`).
    ``backend`` (a :class:`specfair.backends.Backend`, e.g. llama.cpp): run on that engine
    instead; ``pair_or_models`` is then ignored (may be None). A backend that drafts by its own
    rule (``drafting()``: HF assisted generation's defaults) records that rule's settings in
    place of the policy's.
    ``policy`` (:func:`specfair.decoding.policy.parse_policy`; None: ``fixed:gamma``) gives
    each prompt's γ policy (by its task); ``proposer``: "model", "ngram[:N]" (the drafter may be
    None), "hybrid[:N]", "suffix[:DIR]" or "suffix-hybrid[:DIR]". Both are run settings.
    ``index``: the suffix proposers' per-task index (:class:`specfair.drafters.index.TaskIndex`;
    None: the request's own tokens only), each prompt drafting from the index of the task its
    drafter is routed by (the prompt's label, or the task router's route).
    """
    target, drafter, tok, t_name, d_name = _models(pair_or_models, tokenizer, backend)
    ids = [p.id for p in prompts]
    if len(set(ids)) != len(ids):
        raise SpecfairError("prompt ids must be unique")
    policy = policy if policy is not None else parse_policy(None, gamma)
    parse_proposer(proposer)
    sampling = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p,
                    top_k=top_k, seed=seed)
    d_label = "none" if not uses_drafter(proposer) else _label(drafter, drafter_label or d_name)
    settings = {"drafter": d_label, "target": _label(target, target_label or t_name),
                **policy.settings(), **sampling, "proposer": proposer,
                "backend": backend.name if backend is not None else "hf"}  # fmt: skip
    if callable(getattr(backend, "drafting", None)):  # an engine drafting by its own rule
        settings |= backend.drafting()  # (HF assisted generation's defaults), not a policy
    block = run_settings(**{**settings, "dtype": model_dtype(target), **(extra_settings or {})})
    path = Path(out_dir) / BENCH_FILE
    done = _resume(path, block)
    todo = [(p, m) for p in prompts for m in MODES if (p.id, m) not in done]
    drafts = as_proposer(drafter) if drafter is not None else None
    drafter_of = lambda p: draft_for(drafts, p) if drafts is not None else None  # noqa: E731
    routed = drafts is not None and callable(getattr(drafts, "route", None))
    def gen_kw(p) -> dict:
        kw = _gen_kw(policy, proposer, p.task, {**sampling, "backend": backend})
        if index is not None:
            kw["index"] = index.for_task(route_of(drafts, p) if routed else p.task)
        return kw

    if todo and warmup:
        _warm_up(target, drafter_of, tok, todo[0][0], gen_kw(todo[0][0]))
    with progress_bar(len(todo), "bench", enabled=progress) as advance:
        for p, mode in todo:
            ar = done.get((p.id, "ar"))
            body = run_prompt(mode, target, drafter_of(p) if mode == "sd" else None, tok, p,
                              history=_history(p, mode, ar), **gen_kw(p))
            rec = {"id": p.id, "task": p.task, "mode": mode, **settings, "settings": block,
                   **body, "turns": len(p.turns), "time": time.time()}
            if routed and mode == "sd":  # the copy the classifier chose (None: the base)
                rec["route"] = route_of(drafts, p)
            rec["matches_ar"] = (ar["tokens"] == rec["tokens"]
                                 if mode == "sd" and ar is not None else None)
            append_jsonl(path, rec)
            done[(p.id, mode)] = rec
            advance(f"{p.id} {mode}")
    return path


def _gen_kw(policy: DraftingPolicy, proposer: str, task: str | None, kw: dict) -> dict:
    """The decoding arguments of a prompt of ``task``: a fixed γ as an int (every backend takes
    it), else the task's γ policy, with the confidence threshold and the proposer."""
    if policy.kind == "fixed" and proposer == "model":
        return {**kw, "gamma": policy.gamma}
    if policy.kind == "fixed" and kw.get("backend") is not None:  # the engine's own drafting
        return {**kw, "gamma": policy.gamma, "proposer": proposer}
    return {**kw, "gamma": policy.for_task(task), "draft_threshold": policy.draft_threshold,
            "proposer": proposer}  # fmt: skip


def _models(pair_or_models, tokenizer, backend):
    """``(target, drafter, tokenizer, target_label, drafter_label)``; with a ``backend`` the
    models are None and the rest is the backend's."""
    if backend is not None:
        tok, t_name, d_name = backend.tokenizer, backend.target_label, backend.drafter_label
        target = drafter = None
    else:
        target, drafter, tok, t_name, d_name = unpack_models(pair_or_models, tokenizer)
    if tok is None:
        raise SpecfairError("run_bench needs a tokenizer")
    return target, drafter, tok, t_name, d_name


def _resume(path: Path, block: dict) -> dict[tuple[str, str], dict]:
    """The records already in ``path`` by (id, mode), refused if written with settings other
    than ``block``'s (a truncated last line is dropped first)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    done_recs = load_bench_records(path, repair=True)
    check_settings(path, done_recs, block)  # records from before the backends: no "backend"
    return {(r["id"], r["mode"]): r for r in done_recs}


def _warm_up(target, drafter_of, tok, prompt, gen_kw: dict) -> None:
    """One short untimed AR and SD generation (the first turn of ``prompt``) warms up the
    kernels."""
    wids = encode_prompt(tok, prompt, turn=0)
    for m in MODES:
        _generate(m, target, drafter_of(prompt) if m == "sd" else None, tok, wids,
                  **{**gen_kw, "max_new_tokens": min(8, gen_kw["max_new_tokens"])})


def _history(prompt, mode: str, ar: dict | None) -> list[list[int]] | None:
    """The answers an SD run of a multi-turn prompt asks its later turns after: the AR run's
    (None: the run's own, for AR and single-turn prompts)."""
    if mode == "sd" and len(prompt.turns) > 1:
        if ar is None:  # pragma: no cover - AR always runs first
            raise SpecfairError(f"{prompt.id}: the SD run needs the AR record first")
        return split_turns(ar)
    return None
