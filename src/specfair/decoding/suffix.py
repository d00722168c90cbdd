"""Drafts from a task's own text: SuffixDecoding (Oliaro et al., arXiv 2411.04975).

SuffixDecoding keeps two suffix trees over token ids, each node counting the occurrences of its
path: a *global* one over a corpus (here: one task's training text, :class:`SuffixIndex`, built
by :mod:`specfair.drafters.index`) and a *per-request* one over the request's own prompt and
output. At each step it matches the last ``m`` tokens of the context (``m`` = 1 .. up to
``max_depth - 1``) in a tree and drafts greedily from there, each next token the most frequent
continuation, while the draft's estimated probability (the product of count / parent count
along the path) stays >= ``min_token_prob``, with at most ``floor(max_spec_factor * m +
max_spec_offset)`` tokens and a path (match + draft) no deeper than ``max_depth``; of all
``m`` and both trees it keeps the draft of highest score (the sum of those probabilities; ties:
the longer match, the request's tree). The draft is a deterministic function of the context, so
as a draft distribution it is one-hot and the rejection sampler keeps the target's output
distribution (as for prompt lookup, :mod:`specfair.decoding.ngram`).

Which implementation, and why ours: vLLM's ``suffix`` method calls Snowflake's
``arctic_inference.suffix_decoding`` (a C++ suffix tree, PyPI ``arctic-inference``). Its PyPI
releases with that module ship as a source archive only (0.3.0: no wheel; the wheels on PyPI
are the pure-Python 0.0.x releases without it), whose build needs torch >= 2.10, CMake, ninja,
nanobind, grpcio-tools and a C++20 compiler, and ``pip install`` failed on this CPU machine
(CMake picked an interpreter without nanobind). Built by hand with CMake, the module runs on a
CPU without vLLM or torch — but a dependency that needs a compiler toolchain at install is not
one specfair takes. This module gives the same drafts from a flat layout instead of a tree:
the corpus as one int array (sequences separated by -1) plus the positions of each token; the
counts of a tree node are the sizes of the occurrence sets, computed on demand (the occurrences
of ``m + 1`` context tokens are those of ``m`` whose previous token matches). Building is a
concatenation and one argsort (no tree to build, nothing to pickle), and a step costs a few
numpy operations per distinct occurrence set. One deliberate difference: among continuations of
equal count the smallest token id wins (Arctic's order among equals follows insertion history).

Defaults are vLLM's (``suffix_decoding_max_tree_depth`` 24, ``max_spec_factor`` 1.0,
``min_token_prob`` 0.1; the draft capped by the tree depth, as vLLM's default
``num_speculative_tokens`` is). The global tree is static: unlike vLLM's, it does not grow with
the answers being served, so that a benchmark's result does not depend on the order of its
prompts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from specfair.decoding.ngram import LookupDrafts

SEP = -1  # between the corpus's sequences: never a token, so no match crosses it


@dataclass(frozen=True)
class SuffixParams:
    """SuffixDecoding's knobs (vLLM's names without ``suffix_decoding_``)."""

    max_tree_depth: int = 24
    max_spec_factor: float = 1.0
    max_spec_offset: float = 0.0
    min_token_prob: float = 0.1
    max_spec_tokens: int = 24

    def cap(self, match_len: int) -> int:
        """The most tokens a draft after a match of ``match_len`` tokens may have."""
        by_match = int(match_len * self.max_spec_factor + self.max_spec_offset + 1e-6)
        return max(0, min(self.max_spec_tokens, by_match, self.max_tree_depth - match_len))


DEFAULT_PARAMS = SuffixParams()


@dataclass
class Draft:
    """A speculation: tokens, their estimated probabilities, score (their sum), match length;
    ``tree``: which tree drafted it (``"request"`` or ``"index"``, set by :func:`suffix_draft`)."""

    tokens: list[int]
    probs: list[float]
    score: float = 0.0
    match_len: int = 0
    tree: str = ""


def _flat(seqs) -> np.ndarray:
    """The sequences as one int64 array, each one preceded and the last one followed by SEP."""
    parts = [np.full(1, SEP, dtype=np.int64)]
    for s in seqs:
        parts += [np.asarray(s, dtype=np.int64).reshape(-1), np.full(1, SEP, dtype=np.int64)]
    return np.concatenate(parts)


class SuffixIndex:
    """A corpus of token sequences, ready to match: the implicit suffix tree of SuffixDecoding.

    ``data``: the sequences in one array separated by :data:`SEP`; ``order``: the positions of
    ``data`` sorted by token (stable), so that the occurrences of a token are one slice."""

    def __init__(self, seqs) -> None:
        self._init(_flat(seqs), len(seqs))

    @classmethod
    def from_flat(cls, tokens: np.ndarray, offsets: np.ndarray) -> SuffixIndex:
        """The sequences ``tokens[offsets[i] : offsets[i + 1]]`` (``offsets`` from 0 to the
        total, non-decreasing), without a copy per sequence."""
        self = cls.__new__(cls)
        self._init(np.insert(np.asarray(tokens, dtype=np.int64), offsets, SEP), len(offsets) - 1)
        return self

    def _init(self, data: np.ndarray, n_seqs: int) -> None:
        self.data, self.n_seqs = data, n_seqs
        self.order = np.argsort(self.data, kind="stable")
        self.sorted = self.data[self.order]

    @property
    def n_tokens(self) -> int:
        return int((self.data != SEP).sum())

    def occurrences(self, token: int) -> np.ndarray:
        """The positions of ``token`` in ``data``."""
        lo, hi = np.searchsorted(self.sorted, [token, token + 1])
        return self.order[lo:hi]

    def speculate(self, context, params: SuffixParams = DEFAULT_PARAMS) -> Draft:
        return speculate(self.data, self.occurrences, context, params)


class _Walk:
    """The greedy path from a set of occurrences (their last positions ``ends`` in ``data``):
    each next token the most frequent continuation, extended on demand up to a length."""

    def __init__(self, data: np.ndarray, ends: np.ndarray, min_prob: float) -> None:
        self.data, self.cur, self.min_prob = data, ends, min_prob
        self.tokens: list[int] = []
        self.probs: list[float] = []
        self.prob, self.done = 1.0, False

    def upto(self, k: int) -> None:
        while len(self.tokens) < k and not self.done:
            nxt = self.data[self.cur + 1]
            if nxt[0] != SEP and (nxt == nxt[0]).all():  # one continuation (deep matches)
                vals, counts, i = nxt[:1], [nxt.size], 0
            else:
                vals, counts = np.unique(nxt[nxt != SEP], return_counts=True)
                if not vals.size:
                    self.done = True
                    break
                i = int(counts.argmax())  # the first of the most frequent: the smallest id
            prob = self.prob * int(counts[i]) / self.cur.size
            if prob < self.min_prob:
                self.done = True
                break
            self.prob = prob
            self.tokens.append(int(vals[i]))
            self.probs.append(prob)
            self.cur = self.cur[nxt == vals[i]] + 1


def speculate(data: np.ndarray, occurrences, context, params: SuffixParams = DEFAULT_PARAMS
              ) -> Draft:  # fmt: skip
    """SuffixDecoding's draft for ``context`` (1-D ints) from the tree of ``data`` (sequences
    separated by SEP, starting and ending with SEP); ``occurrences(token)``: its positions."""
    ctx = np.asarray(context, dtype=np.int64)[-params.max_tree_depth :]
    best = Draft([], [])
    if ctx.size < 2:
        return best
    ends = occurrences(int(ctx[-1]))
    walk, size = None, -1
    for m in range(1, ctx.size):  # m: the match length; ends: where ctx[-m:] occurs
        if not ends.size:
            break
        if ends.size != size:  # a new occurrence set (they are nested: same size, same set)
            walk, size = _Walk(data, ends, params.min_token_prob), ends.size
        cap = params.cap(m)
        walk.upto(cap)
        score = float(sum(walk.probs[:cap]))
        if score >= best.score:
            best = Draft(walk.tokens[:cap], walk.probs[:cap], score, m)
        ends = ends[data[ends - m] == ctx[-m - 1]]
    return best


def context_speculate(context, params: SuffixParams = DEFAULT_PARAMS) -> Draft:
    """The draft from the per-request tree: the context's own tokens."""
    data = _flat([context])
    return speculate(data, lambda t: np.flatnonzero(data == t), context, params)


def suffix_draft(context, index: SuffixIndex | None, params: SuffixParams = DEFAULT_PARAMS
                 ) -> Draft:  # fmt: skip
    """The better of the per-request tree's draft and the index's (ties: the request's), its
    ``tree`` saying which."""
    own = context_speculate(context, params)
    own.tree = "request"
    if index is None:
        return own
    other = index.speculate(context, params)
    other.tree = "index"
    return own if own.score >= other.score else other


class SuffixProposer(LookupDrafts):
    """SuffixDecoding as a proposer of the speculative loop (:mod:`.generate`): drafts from the
    request's own tokens and ``index`` (a task's :class:`SuffixIndex`; None: the request's
    tokens only), sized by the match (up to ``room`` and ``max_g``) whatever the γ policy says,
    as a prompt lookup of its own length (``tokens``) is; one-hot ``q`` when sampling."""

    source = "suffix"
    max_tokens = DEFAULT_PARAMS.max_spec_tokens

    def __init__(self, vocab: int, max_g: int, greedy: bool, device: torch.device,
                 dtype: torch.dtype = torch.float32, index: SuffixIndex | None = None,
                 params: SuffixParams = DEFAULT_PARAMS) -> None:  # fmt: skip
        self.index, self.params, self.max_g = index, params, max_g
        self.tokens = params.max_spec_tokens  # its own length: HybridProposer asks it first
        self.q = None if greedy else torch.zeros((1, max_g, vocab), dtype=dtype, device=device)

    def propose(self, buf: torch.Tensor, n: int, g: int, room: int) -> int:
        """Write the draft after ``buf[:, :n]``; returns its length (0: no match)."""
        if room <= 0:
            return 0
        draft = suffix_draft(buf[0, :n].cpu().numpy(), self.index, self.params)
        k = min(len(draft.tokens), room, self.max_g)
        return self._write(buf, n, torch.tensor(draft.tokens[:k], dtype=buf.dtype,
                                                device=buf.device))
