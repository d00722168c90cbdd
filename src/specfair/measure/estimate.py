"""The cheap instrument: teacher-forced acceptance estimates.

For each prompt the target's greedy response is generated once (or read from the resumable
cache ``responses.jsonl``); then ONE forward pass of each model over prompt + response gives, at
every response position s (the context is the prompt and the response's first s tokens), the
target distribution p(·|s) and the drafter distribution q(·|s) at temperature T (default 1):

* α(s) = Σ_x min(p(x|s), q(x|s))   — the acceptance probability of a drafted token under
  speculative *sampling* (Leviathan et al., 2023), over the common vocabulary: the drafter's
  probability of ids beyond its vocabulary is 0 (and the target's likewise);
* g(s) = 1[argmax p(·|s) = argmax q(·|s)] — whether a *greedy* drafter's token is accepted by
  greedy verification (independent of T) -- α and g are
  :func:`specfair.measure.acceptance.position_alpha`;
* H(p, q)(s) = −Σ_x p(x|s) log q(x|s) and KL(p‖q)(s) = Σ_x p log(p/q), computed on the first
  ``min(V_target, V_drafter)`` logits of each model (each renormalised there, so both stay finite
  when the embedding sizes differ; identical to the full-vocabulary values when they match).

Positions are processed in chunks so that memory is O(chunk · vocab), never O(length · vocab).
``estimate.jsonl`` holds per-prompt sums; the summary pools positions (see
:func:`specfair.measure.estimate_summary.summarize_estimate`).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from specfair.decoding.proposer import as_proposer, draft_for
from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError
from specfair.measure.acceptance import position_alpha, position_ce_kl
from specfair.measure.bench import _label, model_dtype
from specfair.measure.io import append_jsonl, read_jsonl
from specfair.measure.progress import progress_bar
from specfair.measure.responses import (
    RESPONSES_FILE,
    bench_greedy_answers,
    ensure_responses,
    read_responses,
)
from specfair.measure.signals import target_hidden
from specfair.rundir import check_settings, run_settings

ESTIMATE_FILE = "estimate.jsonl"
ESTIMATE_SUMMARY_FILE = "estimate_summary.json"


def model_device(model) -> torch.device:
    try:
        return next(model.parameters()).device
    except StopIteration:  # pragma: no cover
        return torch.device("cpu")


def _vocab_size(model) -> int:
    head = None
    try:
        head = model.get_output_embeddings()
    except Exception:  # noqa: BLE001
        head = None
    if head is not None and hasattr(head, "out_features"):
        return int(head.out_features)
    return int(model.config.vocab_size)


# ----------------------------------------------------------------------- teacher forcing


def _decoder_and_head(model) -> tuple:
    """``(decoder, output head)`` of Qwen2/Llama-style models (also PEFT-wrapped ones), whose
    logits are ``head(decoder(ids))``; ``(None, None)`` for others (soft-capped or scaled
    logits)."""
    cfg = getattr(model, "config", None)
    if (cfg is None or getattr(cfg, "final_logit_softcapping", None) is not None
            or getattr(cfg, "logit_scale", None) is not None):
        return None, None
    try:
        decoder, head = model.get_decoder(), model.get_output_embeddings()
    except Exception:  # noqa: BLE001
        return None, None
    if decoder is None or head is None or decoder is model:
        return None, None
    return decoder, head


def _response_logits_fn(model, prompt_ids: Sequence[int], response_ids: Sequence[int],
                        target: bool = False) -> Callable:
    """ONE forward of ``model`` over prompt + response[:-1]; returns ``f(a, b)`` giving the
    float32 logits that predict ``response_ids[a:b]`` (shape (b - a, V)).

    Fast path (:func:`_decoder_and_head`): keep the final hidden states and apply the output
    head chunk by chunk; for the ``target`` they come from the shared store of target states
    (:func:`specfair.measure.signals.target_hidden`), so the same target and sequence are not
    run twice. Otherwise the full model with ``logits_to_keep`` (n × V logits in memory).
    """
    n, start = len(response_ids), len(prompt_ids) - 1
    decoder, head = _decoder_and_head(model)
    if decoder is not None and target and not model.training:
        h = target_hidden(model, list(prompt_ids) + list(response_ids), len(prompt_ids))
        h = h.to(device=head.weight.device, dtype=head.weight.dtype)
        return lambda a, b: head(h[a:b]).float()
    ids = torch.tensor([list(prompt_ids) + list(response_ids[:-1])], dtype=torch.long,
                       device=model_device(model))
    if decoder is not None:
        h = decoder(input_ids=ids, use_cache=False).last_hidden_state[0]
        return lambda a, b: head(h[start + a : start + b]).float()
    try:
        logits = model(input_ids=ids, use_cache=False, logits_to_keep=n).logits[0, -n:]
    except TypeError:
        logits = model(input_ids=ids, use_cache=False).logits[0, start : start + n]
    return lambda a, b: logits[a:b].float()


@torch.inference_mode()
def teacher_forced_positions(
    target,
    drafter,
    prompt_ids: Sequence[int],
    response_ids: Sequence[int],
    *,
    temperature: float = 1.0,
    chunk_size: int = 32,
) -> dict[str, torch.Tensor]:
    """Per-position statistics of the drafter against the target along a fixed response.

    Returns float64 CPU tensors of length ``len(response_ids)``: ``alpha``, ``greedy_match``,
    ``ce``, ``kl`` (see the module docstring), ``target_match`` (1 where the target's
    teacher-forced argmax equals the response token: all ones for the target's own greedy
    response up to numerical ties) and ``conf`` (the drafter's top probability, what a
    confidence-threshold drafting policy reads; :mod:`specfair.measure.replay`).
    """
    if temperature <= 0:
        raise SpecfairError(
            "the estimate temperature must be > 0 (greedy agreement is always "
            "reported as greedy_match)"
        )
    n = len(response_ids)
    empty = torch.zeros(0, dtype=torch.float64)
    if n == 0:
        return {k: empty for k in ("alpha", "greedy_match", "ce", "kl", "target_match", "conf")}
    if len(prompt_ids) == 0:
        raise SpecfairError("teacher forcing needs a non-empty prompt")
    t_fn = _response_logits_fn(target, prompt_ids, response_ids, target=True)
    d_fn = _response_logits_fn(drafter, prompt_ids, response_ids)
    resp = torch.tensor(list(response_ids), dtype=torch.long)
    out: dict[str, list[torch.Tensor]] = {
        k: [] for k in ("alpha", "greedy_match", "ce", "kl", "target_match", "conf")
    }
    for a in range(0, n, chunk_size):
        b = min(n, a + chunk_size)
        lt = t_fn(a, b).cpu()
        lq = d_fn(a, b).cpu()
        alpha, greedy = position_alpha(lq, lt, temperature)
        out["alpha"].append(alpha)
        out["greedy_match"].append(greedy)
        out["target_match"].append((lt.argmax(-1) == resp[a:b]).float())
        out["conf"].append(F.softmax(lq.float(), dim=-1).max(-1).values)
        ce, kl = position_ce_kl(lq, lt, temperature)
        out["ce"].append(ce)
        out["kl"].append(kl)
    return {k: torch.cat(v).double() for k, v in out.items()}


def teacher_forced_stats(
    target, drafter, prompt_ids, response_ids, *, temperature: float = 1.0, chunk_size: int = 32
) -> dict[str, float]:
    """Sums over the response positions: ``{"n_positions", "alpha_sum", "greedy_match_sum",
    "ce_sum", "kl_sum", "target_match_sum"}``, and per position ``match`` (greedy agreement)
    and ``conf`` (the drafter's top probability): the pass a drafting policy is replayed on."""
    pos = teacher_forced_positions(
        target,
        drafter,
        prompt_ids,
        response_ids,
        temperature=temperature,
        chunk_size=chunk_size,
    )
    return {
        "n_positions": len(response_ids),
        "alpha_sum": float(pos["alpha"].sum()),
        "greedy_match_sum": float(pos["greedy_match"].sum()),
        "ce_sum": float(pos["ce"].sum()),
        "kl_sum": float(pos["kl"].sum()),
        "target_match_sum": float(pos["target_match"].sum()),
        "match": [int(x) for x in pos["greedy_match"].tolist()],
        "conf": [round(float(x), 4) for x in pos["conf"].tolist()],
    }


# ----------------------------------------------------------------------- cost ratio c


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _crop_to(cache, length: int) -> None:
    """Cut the KV cache back to ``length`` tokens (a negative ``crop`` removes from the end)."""
    extra = cache.get_seq_length() - length
    if extra > 0:
        cache.crop(-extra)


@torch.inference_mode()
def time_decode_step(
    model, input_ids: Sequence[int], *, repeats: int = 5, warmup: int = 2
) -> float:
    """Median seconds of one single-token forward of ``model`` after ``input_ids[:-1]`` are in
    its KV cache (the cost of one drafting / decoding step at that context length)."""
    from transformers import DynamicCache

    dev = model_device(model)
    ids = torch.tensor([list(input_ids)], dtype=torch.long, device=dev)
    cache = DynamicCache()
    kw = {"cache": cache, "use_cache": True}
    model(input_ids=ids[:, :-1], **kw)
    n = ids.shape[1] - 1
    last = ids[:, -1:]
    times = []
    for i in range(warmup + repeats):
        _sync(dev)
        t0 = time.perf_counter()
        model(input_ids=last, **kw)
        _sync(dev)
        dt = time.perf_counter() - t0
        _crop_to(cache, n)
        if i >= warmup:
            times.append(dt)
    return statistics.median(times)


def measure_cost_ratio(
    target,
    drafter,
    input_ids: Sequence[int] | None = None,
    *,
    context_len: int = 128,
    repeats: int = 5,
    warmup: int = 2,
) -> float:
    """Leviathan's cost coefficient ``c = t_drafter / t_target``: the median time of one
    single-token forward of the drafter divided by that of the target, on the same context
    (``input_ids``, default a fixed pseudo-text of ``context_len`` ids) held in the KV cache."""
    if input_ids is None:
        v = min(_vocab_size(target), _vocab_size(drafter), 256)
        input_ids = [(7 * i + 65) % v for i in range(context_len)]
    if len(input_ids) < 2:
        raise SpecfairError("measure_cost_ratio needs a context of at least 2 tokens")
    t_d = time_decode_step(drafter, input_ids, repeats=repeats, warmup=warmup)
    t_t = time_decode_step(target, input_ids, repeats=repeats, warmup=warmup)
    return t_d / t_t


# ----------------------------------------------------------------------- the estimate run


def run_estimate(
    target,
    drafter,
    tokenizer,
    prompts: Sequence,
    out_dir: str | Path,
    *,
    drafter_label: str = "drafter",
    max_new_tokens: int = 128,
    temperature: float = 1.0,
    chunk_size: int = 32,
    gamma: int = DEFAULT_GAMMA,
    responses_path: str | Path | None = None,
    generation_drafter="same",
    bench_path: str | Path | None = None,
    progress: bool = True,
    target_label: str | None = None,
    extra_settings: dict | None = None,
) -> Path:
    """Write ``out_dir/estimate.jsonl`` (one record per prompt, appended as each finishes;
    a rerun skips prompts already there) and return its path.

    ``drafter`` is any causal-LM module (a fine-tuned or PEFT-wrapped drafter works) or a
    proposer (:mod:`specfair.decoding.proposer`, e.g. a per-task router): it is only run
    forward. Responses come from ``responses_path`` (default
    ``out_dir/responses.jsonl``), generated when missing with ``generation_drafter`` ("same" =
    ``drafter``; ``None`` = autoregressive) — they depend on the target only, so a cache can be
    shared between drafters. Missing responses are first taken from the greedy AR records of
    ``bench_path`` (default ``out_dir/bench.jsonl``, if it exists and matches
    ``max_new_tokens``), which saves generating them again. Every record carries a
    ``settings`` block (target, drafter, temperature, max_new_tokens, dtype, the specfair
    version and ``extra_settings``); a file written with other settings is refused.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    resp_path = Path(responses_path) if responses_path is not None else out_dir / RESPONSES_FILE
    est_path = out_dir / ESTIMATE_FILE
    done = read_jsonl(est_path, repair=True)
    block = run_settings(**{
        "target": _label(target, target_label), "drafter": drafter_label,
        "temperature": temperature, "max_new_tokens": max_new_tokens,
        "dtype": model_dtype(target), **(extra_settings or {})})
    check_settings(est_path, done, block)
    done_ids = {r["id"] for r in done}
    cache = read_responses(resp_path)
    proposer = as_proposer(drafter)
    gen = as_proposer(drafter if generation_drafter == "same" else generation_drafter) \
        if generation_drafter is not None else None
    bench_ar = bench_greedy_answers(
        bench_path if bench_path is not None else out_dir / "bench.jsonl", max_new_tokens
    )
    todo = [p for p in prompts if p.id not in done_ids]

    with progress_bar(len(todo), "estimate", enabled=progress) as advance:
        for p in todo:
            recs = ensure_responses(target, tokenizer, p, resp_path,
                                    drafter=draft_for(gen, p) if gen is not None else None,
                                    max_new_tokens=max_new_tokens, gamma=gamma, cache=cache,
                                    bench_ar=bench_ar)
            sums = _summed_stats(target, draft_for(proposer, p), recs, temperature,
                                 chunk_size)
            append_jsonl(est_path, {
                "id": p.id, "task": p.task, **sums, "n_turns": len(recs),
                "drafter": drafter_label, "target": block["target"], "temperature": temperature,
                "settings": block,
            })  # fmt: skip
            advance(p.id)
    return est_path


def _summed_stats(target, drafter, recs: Sequence[dict], temperature: float,
                  chunk_size: int) -> dict:
    """:func:`teacher_forced_stats` summed over the turns (response records) of one prompt."""
    sums = {"n_positions": 0, "alpha_sum": 0.0, "greedy_match_sum": 0.0, "ce_sum": 0.0,
            "kl_sum": 0.0, "target_match_sum": 0.0}
    passes = []
    for r in recs:
        s = teacher_forced_stats(target, drafter, r["prompt_ids"], r["response_ids"],
                                 temperature=temperature, chunk_size=chunk_size)
        for k in sums:
            sums[k] += s[k]
        passes.append({"match": s["match"], "conf": s["conf"]})
    return sums | {"passes": passes}
