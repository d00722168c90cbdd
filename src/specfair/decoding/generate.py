"""The decoders: ``speculative_generate`` and its baseline ``autoregressive_generate``.

One readable loop each, in the style of gpt-fast's generate.py, with the split of vLLM's
spec_decode. A speculative step: the drafter proposes (``_Proposer.propose``; or prompt lookup,
:mod:`specfair.decoding.ngram`, for ``proposer="ngram"``/``"hybrid"``), the target scores
the drafts in one forward over the last token and the drafts (``_verify``), the rejection
sampler decides (``_accept``, with ``rejection.py``), the step is recorded (``_record``) and both
caches roll back to the tokens kept. Both decoders share the prefill, the cache set-up, the
sampling code and the stopping rules, so that a speed-up compares like with like.

Invariants of the speculative loop (batch 1, shapes kept [1, T]):
``buf[:, :n]`` holds prompt + output; the target's KV cache holds the first ``n - 1`` tokens
(the last token is the input of the next verification); the drafter's cache holds the first
``seen <= n - 1`` tokens and the next draft pass feeds it ``buf[:, seen:n]`` (1 token after a
rejection, 2 after a fully accepted step: the last draft and the bonus token, more after the
n-gram steps of a hybrid proposer).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import torch
from transformers import DynamicCache

from specfair.decoding.gamma import GammaPolicy, as_policy
from specfair.decoding.ngram import HybridProposer, NgramProposer, parse_proposer
from specfair.decoding.rejection import greedy_verify, rejection_sample
from specfair.decoding.request import check_request, eos_set, prompt_tensor
from specfair.decoding.result import GenerationResult, StepRecord
from specfair.decoding.sampling import SamplingParams, fit_vocab, logits_to_probs
from specfair.decoding.suffix import SuffixIndex, SuffixProposer
from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError


def _new_cache(model) -> DynamicCache:
    return DynamicCache(config=model.config)


def _crop(cache: DynamicCache, n_remove: int) -> None:
    if n_remove > 0:
        cache.crop(-n_remove)


def _drafter_input(drafter):
    """A function that moves token ids to the drafter's device and maps ids beyond its embedding
    matrix (the target's vocabulary may be larger: padding rows, never real tokens) to its pad
    id, or 0. This changes only the drafts, never the output's distribution."""
    n_emb = drafter.get_input_embeddings().num_embeddings
    fallback = getattr(drafter.generation_config, "pad_token_id", None)
    if not isinstance(fallback, int) or not 0 <= fallback < n_emb:
        fallback = 0
    device = drafter.device

    def prepare(ids: torch.Tensor) -> torch.Tensor:
        ids = ids.to(device)
        return ids.masked_fill(ids >= n_emb, fallback)

    return prepare


def _syncer(device: torch.device):
    if device.type == "cuda":
        return torch.cuda.synchronize
    return lambda: None


def _pick(
    logits: torch.Tensor, sp: SamplingParams, gen
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Next token [B] from last-position logits [B, V] (and the probabilities when sampling).
    The draw happens on the generator's device (a CPU generator may drive a GPU model)."""
    if sp.greedy:
        return logits.argmax(dim=-1), None
    probs = logits_to_probs(logits, sp.temperature, sp.top_k, sp.top_p)
    src = probs if gen is None else probs.to(gen.device)
    return torch.multinomial(src, 1, generator=gen).squeeze(-1).to(probs.device), probs


class _Output:
    """Collects emitted tokens and applies the stopping rules (EOS, max_new_tokens)."""

    def __init__(self, eos: frozenset[int], max_new_tokens: int) -> None:
        self.eos, self.max_new = eos, max_new_tokens
        self.tokens: list[int] = []
        self.stop_reason: str | None = None

    def extend(self, block: list[int]) -> int:
        """Append ``block`` up to the first EOS / the token limit; return how many were kept."""
        room = self.max_new - len(self.tokens)
        block = block[:room]
        if self.eos:
            for j, t in enumerate(block):
                if t in self.eos:
                    block = block[: j + 1]
                    self.stop_reason = "eos"
                    break
        self.tokens.extend(block)
        if self.stop_reason is None and len(self.tokens) >= self.max_new:
            self.stop_reason = "max_tokens"
        return len(block)


def _setup(
    target, input_ids, max_new_tokens, temperature, top_p, top_k, eos_token_id, seed, drafter=None
):
    device = target.device
    ids = prompt_tensor(input_ids, device)
    models = [("target", target)] + ([("drafter", drafter)] if drafter is not None else [])
    check_request(models, ids.shape[1], max_new_tokens)
    sp = SamplingParams(float(temperature), int(top_k), float(top_p))
    gen = None
    if seed is not None and not sp.greedy:
        gen = torch.Generator(device=device)
        gen.manual_seed(int(seed))
    buf = torch.empty((1, ids.shape[1] + max_new_tokens + 1), dtype=torch.long, device=device)
    buf[:, : ids.shape[1]] = ids
    return ids.shape[1], sp, gen, buf, _Output(eos_set(target, eos_token_id), max_new_tokens)


def _finish(out: _Output, steps, prefill_s, t_start, sync, tokenizer) -> GenerationResult:
    sync()
    wall = time.perf_counter() - t_start
    text = tokenizer.decode(out.tokens, skip_special_tokens=True) if tokenizer is not None else None
    return GenerationResult(
        tokens=out.tokens,
        text=text,
        steps=steps,
        prefill_s=prefill_s,
        wall_s=wall,
        stop_reason=out.stop_reason or "max_tokens",
    )


def _prefill(target, cache: DynamicCache, buf, t_len: int, sp, gen, out: _Output) -> torch.Tensor:
    """The target reads the prompt ``buf[:, :t_len]`` and gives the first new token, written at
    ``buf[:, t_len]`` and to ``out``; returns the target's logits [1, 1, V]."""
    logits = target(input_ids=buf[:, :t_len], cache=cache, use_cache=True, logits_to_keep=1).logits
    tok, _ = _pick(logits[:, -1], sp, gen)
    buf[:, t_len] = tok
    out.extend([int(tok)])
    return logits


class _Proposer:
    """The drafter's side of the speculative loop (gpt-fast's draft model, vLLM's proposer).

    Its KV cache holds ``buf[:, :self.seen]``. ``propose`` feeds it the tokens it has not seen
    yet, then its own drafts one at a time, and writes the drafts after ``buf[:, :n]``; when
    sampling, the distributions they were drawn from go to ``self.q`` for the rejection
    sampler. ``rollback`` forgets the tokens the target did not keep.
    """

    source = "model"

    def __init__(self, drafter, buf, t_len, sp, gen, target_logits, max_g, threshold) -> None:
        self.model, self.cache, self.prepare = drafter, _new_cache(drafter), _drafter_input(drafter)
        self.sp, self.gen, self.threshold = sp, gen, threshold
        self.vocab = target_logits.shape[-1]
        q_dtype = torch.promote_types(target_logits.dtype, torch.float32)
        self.q = None
        if not sp.greedy:
            self.q = torch.zeros((1, max_g, self.vocab), dtype=q_dtype, device=buf.device)
        prompt = self.prepare(buf[:, :t_len])
        self.model(input_ids=prompt, cache=self.cache, use_cache=True, logits_to_keep=1)
        self.seen = t_len

    def propose(self, buf: torch.Tensor, n: int, g: int, room: int = 0) -> int:
        """Draft up to ``g`` tokens into ``buf[:, n : n + g]``; returns how many were drafted
        (fewer once the drafter's confidence in its draft falls below the threshold)."""
        inp = buf[:, self.seen : n]
        for i in range(g):
            logits = self.model(
                input_ids=self.prepare(inp), cache=self.cache, use_cache=True, logits_to_keep=1
            ).logits[:, -1]
            logits = fit_vocab(logits.to(buf.device), self.vocab)
            x, q = _pick(logits, self.sp, self.gen)
            if q is not None:
                self.q[:, i] = q
            buf[:, n + i] = x
            inp = buf[:, n + i : n + i + 1]
            if self.threshold > 0.0 and i < g - 1 and _confidence(logits, x, q) < self.threshold:
                g = i + 1  # the drafter is unsure: let the target verify what it has
                break
        if g > 0:
            self.seen = n + g - 1
        return g

    def draft_probs(self, g: int) -> torch.Tensor | None:
        """q [1, g, V] of the last proposal (None when greedy)."""
        return None if self.q is None else self.q[:, :g]

    def rollback(self, n: int) -> None:
        """Keep at most ``n - 1`` tokens in the cache (the last token is read next step)."""
        if self.seen > n - 1:
            _crop(self.cache, self.seen - (n - 1))
            self.seen = n - 1


def _make_proposer(kind: str, lookup, drafter, buf, t_len, sp, gen, logits, max_g, threshold,
                   index=None):  # fmt: skip
    """The proposer of ``kind`` (:data:`specfair.decoding.ngram.PROPOSERS`; ``lookup``: the
    n-gram's tokens a step, None: the policy's γ; ``index``: a suffix kind's task index); an
    n-gram or suffix proposer needs no drafter; suffix-hybrid: suffix, else hybrid."""
    q_dtype = torch.promote_types(logits.dtype, torch.float32)
    ngram = NgramProposer(logits.shape[-1], max_g, sp.greedy, buf.device, q_dtype, tokens=lookup)
    suffix = SuffixProposer(logits.shape[-1], max_g, sp.greedy, buf.device, q_dtype, index)
    if kind in ("ngram", "suffix"):
        return ngram if kind == "ngram" else suffix
    model = _Proposer(drafter, buf, t_len, sp, gen, logits, max_g, threshold)
    if kind == "suffix-hybrid":
        return HybridProposer(suffix, HybridProposer(ngram, model))
    return model if kind == "model" else HybridProposer(ngram, model)


def _confidence(logits: torch.Tensor, x: torch.Tensor, q: torch.Tensor | None) -> float:
    """The drafter's probability of its draft ``x`` (from ``q`` when sampling)."""
    return float(q[0, x[0]] if q is not None else torch.softmax(logits[0].float(), -1)[x[0]])


def _accept(logits, drafts, q, sp: SamplingParams, gen) -> tuple[torch.Tensor, torch.Tensor]:
    """The rejection sampler: (drafts accepted [1], next token [1]) from the target's logits
    [1, g + 1, V] over the drafts [1, g] (greedy: prefix match with the target's argmax;
    sampling: Leviathan et al.'s rule with the residual distribution)."""
    if sp.greedy:
        return greedy_verify(drafts, logits.argmax(dim=-1))
    p = logits_to_probs(logits, sp.temperature, sp.top_k, sp.top_p)
    return rejection_sample(drafts, q, p, gen)


def _verify(target, cache, buf: torch.Tensor, n: int, g: int, sp, gen, q) -> int:
    """Score and verify: one target forward over the last token and the ``g`` drafts, then the
    rejection sampler. Writes the correction (or bonus) token at ``buf[:, n + k]`` and returns
    ``k``, the drafts accepted. The cache then holds ``n + g`` tokens."""
    logits = target(
        input_ids=buf[:, n - 1 : n + g], cache=cache, use_cache=True, logits_to_keep=g + 1
    ).logits
    k_t, nxt = _accept(logits, buf[:, n : n + g], q, sp, gen)
    k = int(k_t)
    buf[:, n + k] = nxt
    return k


def _record(policy: GammaPolicy, g: int, k: int, kept: int, source: str, sized: bool, t0, t1,
            t2) -> StepRecord:  # fmt: skip
    """The step's record; the gamma policy is told every step's verification (``timed``: a
    plain step too) and learns from the steps that drafted and that it ``sized`` (their
    drafting time is what the step's proposer cost: an n-gram lookup costs next to nothing)."""
    policy.timed(g, t2 - t1, source if g else "")
    if g > 0 and sized:
        policy.update(g, k, t1 - t0, t2 - t1)
    return StepRecord(g, g, k, kept, t1 - t0 if g else 0.0, t2 - t1, source if g else "")


@torch.inference_mode()
def autoregressive_generate(
    target,
    input_ids,
    *,
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    eos_token_id: int | Sequence[int] | None = None,
    seed: int | None = None,
    tokenizer=None,
    generator: torch.Generator | None = None,
) -> GenerationResult:
    """Plain decoding with the target alone: the baseline of ``speculative_generate``.

    One step per token after the first (``gamma=0``, ``verify_s`` = the target forward).
    ``generator``: sample with this generator (advanced in place; each token is drawn on its
    device) instead of a fresh one seeded with ``seed``.
    """
    t_start = time.perf_counter()
    if seed is not None and generator is not None:
        raise SpecfairError("give seed or generator, not both")
    t_len, sp, gen, buf, out = _setup(
        target, input_ids, max_new_tokens, temperature, top_p, top_k, eos_token_id, seed
    )
    gen = gen if generator is None else generator
    sync = _syncer(buf.device)
    cache = _new_cache(target)
    steps: list[StepRecord] = []

    _prefill(target, cache, buf, t_len, sp, gen, out)
    n = t_len + 1
    sync()
    prefill_s = time.perf_counter() - t_start

    while out.stop_reason is None:
        t0 = time.perf_counter()
        logits = target(input_ids=buf[:, n - 1 : n], cache=cache, use_cache=True).logits
        tok, _ = _pick(logits[:, -1], sp, gen)
        buf[:, n] = tok
        n += 1
        sync()
        dt = time.perf_counter() - t0
        kept = out.extend([int(tok)])
        steps.append(StepRecord(0, 0, 0, kept, 0.0, dt))

    return _finish(out, steps, prefill_s, t_start, sync, tokenizer)


@torch.inference_mode()
def speculative_generate(
    target,
    drafter,
    input_ids,
    *,
    max_new_tokens: int,
    gamma: int | GammaPolicy = DEFAULT_GAMMA,
    temperature: float = 0.0,
    top_p: float = 1.0,
    top_k: int = 0,
    eos_token_id: int | Sequence[int] | None = None,
    seed: int | None = None,
    tokenizer=None,
    draft_threshold: float = 0.0,
    proposer: str = "model",
    index: SuffixIndex | None = None,
) -> GenerationResult:
    """Lossless speculative decoding: the output has the target's distribution (greedy: the
    target's greedy output, token for token).

    ``gamma``: drafts per step, an int (``FixedGamma``) or a ``GammaPolicy``. The drafter and
    the target must share a tokenizer; their vocabulary (embedding) sizes may differ.
    ``draft_threshold``: stop drafting a step early once the drafter's probability of its own
    draft falls below it (HF's ``assistant_confidence_threshold``); the decision uses the
    drafter's information only, so the output distribution is unchanged.
    ``proposer``: "model" (the drafter), "ngram" (prompt lookup, :mod:`.ngram`; ``drafter`` may
    be None) or "hybrid" (the n-gram match, else the drafter); same verification for all.
    ``ngram:N`` / ``hybrid:N``: a lookup step copies up to N tokens (HF's
    ``prompt_lookup_num_tokens``) and ``gamma`` sizes the drafter's steps only.
    ``suffix`` / ``suffix-hybrid`` (:mod:`.suffix`): SuffixDecoding's drafts from the request's
    tokens and ``index`` (the task's text; None: the request's tokens only), sized by the
    match; the hybrid then tries prompt lookup and the drafter (sized by ``gamma``). The DIR of
    ``suffix:DIR`` is the caller's to load (:mod:`specfair.drafters.index`).
    A step never drafts more than the tokens still to produce minus one; a step with nothing to
    draft (or whose policy says 0, :class:`specfair.decoding.gamma.VerifyAwareGamma`'s off arm)
    is a plain target step (``gamma=0``; a lookup of ``ngram:N``/``hybrid:N`` still copies).
    """
    t_start = time.perf_counter()
    policy = as_policy(gamma)
    kind, lookup = parse_proposer(proposer)
    if drafter is None and kind not in ("ngram", "suffix"):
        raise SpecfairError(f"proposer {proposer!r} needs a drafter model")
    d_model = drafter if kind not in ("ngram", "suffix") else None
    t_len, sp, gen, buf, out = _setup(
        target, input_ids, max_new_tokens, temperature, top_p, top_k, eos_token_id, seed, d_model
    )
    sync = _syncer(buf.device)
    policy.reset()
    t_cache = _new_cache(target)
    steps: list[StepRecord] = []

    # Prefill: the target reads the prompt and gives the first token, the drafter reads it too.
    logits = _prefill(target, t_cache, buf, t_len, sp, gen, out)
    own = SuffixProposer.max_tokens if kind.startswith("suffix") else lookup or 0
    max_g = max(1, min(max(policy.max_gamma, own), max_new_tokens))
    drafts = _make_proposer(kind, lookup, d_model, buf, t_len, sp, gen, logits, max_g,
                            draft_threshold, index)  # fmt: skip
    n = t_len + 1
    sync()
    prefill_s = time.perf_counter() - t_start

    while out.stop_reason is None:
        room = max_new_tokens - len(out.tokens) - 1
        g = min(policy.next_gamma(), room, max_g)
        t0 = time.perf_counter()
        g = drafts.propose(buf, n, g, room)  # the proposer drafts g tokens (lookup: its own)
        sync()
        t1 = time.perf_counter()
        k = _verify(target, t_cache, buf, n, g, sp, gen, drafts.draft_probs(g))
        sync()
        t2 = time.perf_counter()
        kept = out.extend(buf[0, n : n + k + 1].tolist())
        sized = drafts.source == "model" or (drafts.source == "ngram" and lookup is None)
        steps.append(_record(policy, g, k, kept, drafts.source, sized, t0, t1, t2))
        # Roll back: the target keeps n + k tokens (the new last one is read next step).
        _crop(t_cache, g - k)
        n += k + 1
        drafts.rollback(n)  # the drafter keeps at most as many

    return _finish(out, steps, prefill_s, t_start, sync, tokenizer)
