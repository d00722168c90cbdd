"""Drafts that cost nothing: prompt lookup (an n-gram match against the context).

Hugging Face's ``prompt_lookup_num_tokens`` (``PromptLookupCandidateGenerator``): take the last
``n`` tokens of the context (prompt + output), ``n`` from ``max_ngram_size`` down to 1, find
their first earlier occurrence in the context, and propose the tokens that followed it. The
proposal is a deterministic function of the context, so as a draft distribution it is one-hot:
the rejection sampler accepts it with probability p(x) and, on a rejection, samples from p
with x removed — the output keeps the target's distribution.

Proposers of the speculative loop (:mod:`specfair.decoding.generate`) share one interface:
``propose(buf, n, g, room) -> drafted`` (``g``: the γ policy's drafts for this step; ``room``:
the most a step may draft), ``draft_probs(g)``, ``rollback(n)`` and ``source`` (what drafted the
last proposal: ``"model"`` or ``"ngram"``).

A proposer is named ``model``, ``ngram[:N]`` or ``hybrid[:N]`` (:func:`parse_proposer`). ``N``
is Hugging Face's ``prompt_lookup_num_tokens``: a lookup step copies up to N tokens whatever
the γ policy says (a copy costs nothing to draft, only its verification), and the policy then
sizes, and learns from, the drafter's steps only. Without ``N`` the policy's γ bounds every
step, lookup steps included.

``suffix[:DIR]`` and ``suffix-hybrid[:DIR]`` draft from a suffix tree of the request's tokens
and of a task's text (SuffixDecoding, :mod:`specfair.decoding.suffix`; ``DIR``: the per-task
index of :mod:`specfair.drafters.index`, which the caller loads and passes to
``speculative_generate(index=)``); ``suffix-hybrid``: the suffix draft first, then prompt
lookup, then the drafter. A suffix step sizes itself (as ``ngram:N``); prompt lookup and the
drafter are sized by γ (as in ``hybrid``).
"""

from __future__ import annotations

import torch

from specfair.errors import SpecfairError
from specfair.schema import ascii_int

PROPOSERS = ("model", "ngram", "hybrid", "suffix", "suffix-hybrid")
SUFFIX_KINDS = ("suffix", "suffix-hybrid")
MAX_NGRAM_SIZE = 3  # Hugging Face's default
SYNTAX = "model | ngram[:N] | hybrid[:N] | suffix[:DIR] | suffix-hybrid[:DIR]"


def parse_proposer(spec: str) -> tuple[str, int | None]:
    """``spec`` (:data:`SYNTAX`) as (kind, N): N, the most tokens a lookup step copies
    (None: the γ policy's γ; a suffix kind's DIR is :func:`index_dir`'s); a bad spec is one
    :class:`SpecfairError`."""
    kind, colon, arg = str(spec).strip().partition(":")
    if kind not in PROPOSERS or (colon and kind == "model"):
        raise SpecfairError(f"proposer must be one of {SYNTAX}, got {spec!r}")
    if kind in SUFFIX_KINDS and colon and not arg.strip():
        raise SpecfairError(f"proposer {spec!r}: DIR of {kind}:DIR must name an index directory")
    if not colon or kind in SUFFIX_KINDS:
        return kind, None
    n = ascii_int(arg)
    if n is None or n < 1:
        raise SpecfairError(f"proposer {spec!r}: N of {kind}:N must be an integer >= 1")
    return kind, n


def uses_drafter(spec: str) -> bool:
    """Whether proposer ``spec`` drafts with a model (all but ``ngram[:N]`` and ``suffix``)."""
    return parse_proposer(spec)[0] not in ("ngram", "suffix")


def index_dir(spec: str) -> str | None:
    """The index directory of a ``suffix:DIR`` / ``suffix-hybrid:DIR`` proposer (else None)."""
    _, colon, arg = str(spec).strip().partition(":")
    return arg.strip() if parse_proposer(spec)[0] in SUFFIX_KINDS and colon else None


def ngram_match(context: torch.Tensor, max_tokens: int, max_ngram_size: int = MAX_NGRAM_SIZE
                ) -> torch.Tensor:  # fmt: skip
    """Up to ``max_tokens`` tokens that followed the first earlier occurrence of the longest
    suffix of ``context`` (1-D, length >= 1) of at most ``max_ngram_size`` tokens; an empty
    tensor when no suffix occurs earlier (with a token after it)."""
    n_ctx = context.shape[0]
    if max_tokens < 1:
        return context[:0]
    for size in range(min(max_ngram_size, n_ctx - 1), 0, -1):
        windows = context[: n_ctx - 1].unfold(0, size, 1)  # every window ending before the last
        hits = (windows == context[n_ctx - size :]).all(dim=1).nonzero()
        if hits.numel():  # the windows end before the last token: a token follows each
            start = int(hits[0, 0]) + size
            return context[start : min(start + max_tokens, n_ctx)]
    return context[:0]


class LookupDrafts:
    """What every draft-from-text proposer shares: the drafts written into the buffer, one-hot
    ``q`` when sampling (a looked-up token is proposed with certainty), nothing to roll back."""

    q: torch.Tensor | None

    def _write(self, buf: torch.Tensor, n: int, drafts: torch.Tensor) -> int:
        k = drafts.shape[0]
        if k:
            buf[0, n : n + k] = drafts
            if self.q is not None:
                self.q[:, :k].zero_()
                self.q[0, torch.arange(k, device=self.q.device), drafts.to(self.q.device)] = 1.0
        return k

    def draft_probs(self, g: int) -> torch.Tensor | None:
        return None if self.q is None else self.q[:, :g]

    def rollback(self, n: int) -> None:
        pass


class NgramProposer(LookupDrafts):
    """Prompt lookup as a proposer: drafts copied from the context, with one-hot ``q`` when
    sampling (``vocab``: the target's vocabulary size)."""

    source = "ngram"

    def __init__(self, vocab: int, max_g: int, greedy: bool, device: torch.device,
                 dtype: torch.dtype = torch.float32, max_ngram_size: int = MAX_NGRAM_SIZE,
                 tokens: int | None = None) -> None:  # fmt: skip
        self.max_ngram_size, self.tokens = max_ngram_size, tokens
        self.q = None if greedy else torch.zeros((1, max_g, vocab), dtype=dtype, device=device)

    def propose(self, buf: torch.Tensor, n: int, g: int, room: int) -> int:
        """Copy up to ``g`` drafts (``tokens``, at most ``room``, when set) into
        ``buf[:, n : ...]``; returns how many (0: no match)."""
        want = g if self.tokens is None else min(self.tokens, room)
        return self._write(buf, n, ngram_match(buf[0, :n], want, self.max_ngram_size).clone())


class HybridProposer:
    """The n-gram match first, the model drafter when there is none. The drafter's cache
    catches up on the tokens of the n-gram steps the next time it drafts (``buf[:, seen:n]``)."""

    def __init__(self, ngram: NgramProposer, model) -> None:
        self.ngram, self.model = ngram, model
        self.last = ngram

    @property
    def source(self) -> str:
        return self.last.source

    def propose(self, buf: torch.Tensor, n: int, g: int, room: int) -> int:
        self.last = self.ngram  # a lookup of its own length copies whatever g says (0 too)
        k = self.ngram.propose(buf, n, g, room) if g > 0 or self.ngram.tokens else 0
        if k == 0 and g > 0:
            self.last = self.model
            k = self.model.propose(buf, n, g, room)
        return k

    def draft_probs(self, g: int) -> torch.Tensor | None:
        return self.last.draft_probs(g)

    def rollback(self, n: int) -> None:
        self.model.rollback(n)
