"""Replay a drafting policy on a teacher-forced pass, for greedy decoding.

Along the target's own greedy answer, the drafter's teacher-forced prediction at each position
is exactly what it would draft there as long as its drafts so far matched: so one pass gives,
per position, ``match`` (the drafter's argmax is the target's token) and ``conf`` (the drafter's
top probability). A speculative step at position ``i`` drafts tokens ``i, i+1, ...`` until the
policy stops; the target accepts the drafts up to the first mismatch and adds one token. The
replay gives the steps and the acceptances of greedy decoding exactly, without running the
models; so are the drafts of ``fixed`` and ``heuristic``. For ``confidence`` the drafts *after* a
step's first rejected one are conditioned on the drafter's own wrong token, which a
teacher-forced pass does not see: their count is estimated from the teacher-forced confidences
(it changes the price of a step, not its tokens).

Proposers (:mod:`specfair.decoding.ngram`): with ``ngram[:N]`` and ``hybrid[:N]`` a step looks
its drafts up in the prompt and the answer so far, as the engine does, and the lookup's drafts
are accepted up to the first that differs from the answer: exact too, given the answer's ids.
``suffix`` and ``suffix-hybrid`` (SuffixDecoding, :mod:`specfair.decoding.suffix`) replay from
each position's suffix draft, computed once along the answer with the task's index
(:func:`text_drafts`: its length, the tokens of it the answer continues with, its tree): a
draft is a function of the context, which along the target's greedy answer is the engine's.

Policies (the names of :mod:`specfair.decoding.gamma`; an engine policy object also replays,
e.g. ``CostAwareGamma`` or ``VerifyAwareGamma``, told each step's time in the replay's cost
units: a ``VerifyAwareGamma`` without a curve of its own fits the replay's ``verify_slope``
from those times, as it fits the machine's in the engine):

- ``fixed``: ``gamma`` drafts per step;
- ``heuristic``: Hugging Face's default schedule: start at ``gamma``, +2 after a step whose
  drafts were all accepted, -1 (not below 1) otherwise;
- ``confidence``: up to ``max_gamma`` drafts, stop after a draft whose confidence is below
  ``threshold`` (Hugging Face's ``assistant_confidence_threshold``; the low-confidence draft is
  still proposed).

The predicted speed-up prices each step at ``drafts * c + v(drafts)`` target-step units
(:func:`step_cost`; ``c``: drafter/target forward cost; ``v(k)``: the cost of verifying k
drafts, 1 + slope * k) against one target step per token for plain decoding. Under the same
price, :func:`break_even_alpha` is the per-position acceptance at which drafting γ tokens a
step is as fast as plain decoding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from specfair.decoding.gamma import FixedGamma, GammaPolicy, HeuristicGamma
from specfair.decoding.ngram import SUFFIX_KINDS, ngram_match, parse_proposer
from specfair.decoding.suffix import DEFAULT_PARAMS, SuffixIndex, SuffixParams, suffix_draft
from specfair.decoding.theory import alpha_from_tau
from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError


def step_cost(k, c: float, verify_slope: float):
    """The price of a step that drafts ``k`` tokens, in target decode steps: ``k`` drafter
    forwards (``c`` each) and a verification ``v(k) = 1 + verify_slope * k``."""
    return k * c + 1.0 + verify_slope * k


def break_even_alpha(gamma: int, c: float, verify_slope: float = 0.0) -> float | None:
    """The per-position acceptance α at which drafting ``gamma`` tokens a step, each accepted
    with probability α given the earlier ones (expected tokens a step
    ``(1 - α^(γ+1)) / (1 - α)``), costs as much per token as plain decoding under
    :func:`step_cost`: SD is faster above it. None when no α in [0, 1] breaks even (a step
    costs more than the γ + 1 tokens it yields at best); 0 when a step costs at most 1."""
    cost = step_cost(gamma, c, verify_slope)
    if cost > gamma + 1:
        return None
    return alpha_from_tau(cost, gamma)


@dataclass(frozen=True)
class Policy:
    kind: str = "fixed"  # fixed | heuristic | confidence
    gamma: int = DEFAULT_GAMMA
    max_gamma: int = 20
    threshold: float = 0.4

    @property
    def label(self) -> str:
        if self.kind == "confidence":
            return f"confidence<{self.threshold:g} (max {self.max_gamma})"
        return f"{self.kind} gamma={self.gamma}"


@dataclass(frozen=True)
class Replay:
    tokens: int
    steps: int
    drafted: int
    accepted: int
    draft_sizes: tuple[int, ...]
    accepted_sizes: tuple[int, ...]
    # per step, what drafted ("model", "ngram", "suffix", ""); () all model
    sources: tuple[str, ...] = ()
    trees: tuple[str, ...] = ()  # per step of a suffix proposer, its draft's tree (else "")

    def cost(self, c: float, verify_slope: float) -> float:
        """Time in target-step units (a lookup's or a suffix tree's drafts cost nothing to
        draft)."""
        srcs = self.sources or ("model",) * len(self.draft_sizes)
        return sum(step_cost(k, c if s == "model" else 0.0, verify_slope)
                   for k, s in zip(self.draft_sizes, srcs, strict=True))  # fmt: skip

    def speedup(self, c: float, verify_slope: float) -> float:
        return self.tokens / self.cost(c, verify_slope)


LOOKUP_COST = 1e-3  # what an adaptive policy is told a lookup draft cost, in target steps


def engine_policy(policy: Policy | GammaPolicy) -> GammaPolicy | None:
    """The engine's γ policy of a replay :class:`Policy` (None for ``confidence``, which the
    replay sizes from the confidences); an engine policy is returned as is."""
    if not isinstance(policy, Policy):
        return policy
    if policy.kind == "heuristic":
        return HeuristicGamma(start=policy.gamma, max_gamma=max(policy.gamma, policy.max_gamma))
    return FixedGamma(policy.gamma) if policy.kind == "fixed" else None


@dataclass(frozen=True)
class TextDrafts:
    """Per position ``i`` of an answer (the context: the prompt and the answer's tokens
    ``0..i``; ``i`` < the answer's length − 1, as the replay's steps) the draft a proposer that
    drafts from text makes there, unbounded by the step's room: its ``length``, how many of its
    leading tokens the answer continues with (``accepted``), and for a suffix draft its
    ``tree`` (``"index"``: the task's text, ``"request"``: the request's own tokens, ``""``:
    no draft). A step that may draft ``k`` tokens takes ``min(length, k)`` of them, of which
    ``min(accepted, k)`` are accepted: each draft is a prefix of the longer one."""

    length: tuple[int, ...]
    accepted: tuple[int, ...]
    tree: tuple[str, ...] = ()

    def to_record(self, prefix: str) -> dict:
        out = {f"{prefix}_len": list(self.length), f"{prefix}_acc": list(self.accepted)}
        return out | ({f"{prefix}_tree": list(self.tree)} if self.tree else {})

    @classmethod
    def of_record(cls, record: dict, prefix: str) -> TextDrafts:
        return cls(tuple(record[f"{prefix}_len"]), tuple(record[f"{prefix}_acc"]),
                   tuple(record.get(f"{prefix}_tree", ())))


def _lead(drafts: Sequence[int], answer: Sequence[int], start: int) -> int:
    """How many of ``drafts`` the answer continues with from ``answer[start]``."""
    a = 0
    while a < len(drafts) and start + a < len(answer) and drafts[a] == answer[start + a]:
        a += 1
    return a


def text_drafts(prompt: Sequence[int], answer: Sequence[int], kind: str,
                index: SuffixIndex | None = None,
                params: SuffixParams = DEFAULT_PARAMS) -> TextDrafts:  # fmt: skip
    """The :class:`TextDrafts` of ``kind`` along ``answer`` after ``prompt``: ``"suffix"``,
    SuffixDecoding's draft from the request's tokens and ``index`` (the task's text; None: the
    request's only), as :class:`specfair.decoding.suffix.SuffixProposer` drafts;
    ``"ngram"``, prompt lookup's (:func:`specfair.decoding.ngram.ngram_match`), as many tokens
    as the step's room allows."""
    if kind not in ("suffix", "ngram"):
        raise SpecfairError(f"text drafts are 'suffix' or 'ngram', not {kind!r}")
    ctx = list(prompt) + list(answer)
    full = torch.tensor(ctx, dtype=torch.long)
    n = len(answer) - 1
    lens, accs, trees = [], [], []
    for i in range(n):
        end = len(prompt) + i + 1
        if kind == "suffix":
            d = suffix_draft(ctx[:end], index, params)
            toks, tree = d.tokens, d.tree if d.tokens else ""
        else:
            toks, tree = ngram_match(full[:end], n - i - 1).tolist(), ""
        lens.append(len(toks))
        accs.append(_lead(toks, answer, i + 1))
        trees.append(tree)
    return TextDrafts(tuple(lens), tuple(accs), tuple(trees) if kind == "suffix" else ())


def replay(match: Sequence[bool], conf: Sequence[float], policy: Policy | GammaPolicy, *,
           proposer: str = "model", context: tuple[Sequence[int], Sequence[int]] | None = None,
           c: float = 0.0, verify_slope: float = 0.0,
           drafts: Mapping[str, TextDrafts] | None = None) -> Replay:  # fmt: skip
    """``match[j]`` / ``conf[j]``: the drafter at the position of the answer's token ``j + 1``
    (token 0 comes from the prefill). As in the engine, a step drafts at most the tokens still
    to produce minus one (a step with nothing to draft is a plain target step).

    ``proposer`` (:func:`specfair.decoding.ngram.parse_proposer`): ``ngram[:N]`` and
    ``hybrid[:N]`` look up drafts as the engine does, in ``context`` = (the prompt's ids, the
    answer's ids), or read them from ``drafts["ngram"]`` (:func:`text_drafts`), and the policy
    sizes and hears the steps the engine's does. ``suffix`` and ``suffix-hybrid`` read each
    position's suffix draft from ``drafts["suffix"]`` (:func:`text_drafts` with the task's
    index): a suffix draft sizes itself (up to the room); ``suffix`` takes a plain step where
    there is none, ``suffix-hybrid`` the hybrid's prompt lookup, else the drafter (``match``;
    for ``suffix`` only its length counts). ``policy``: a :class:`Policy`, or an engine
    :class:`GammaPolicy` (e.g. ``CostAwareGamma``: it is told each step's time in target
    steps, ``c`` a draft, :data:`LOOKUP_COST` a looked-up one, ``1 + verify_slope k`` the
    verification, every step's through ``timed`` as in the engine; it learns from the steps it
    sized: the drafter's, and prompt lookup's without ``N``; fresh state per call). A policy
    may say 0 (``VerifyAwareGamma``'s off arm): a plain step (one that ``ngram:N``/``hybrid:N``
    still looks up, and a suffix proposer still drafts), priced 1."""
    kind, lookup = parse_proposer(proposer)
    pre = dict(drafts or {})
    if kind in SUFFIX_KINDS and "suffix" not in pre:
        raise SpecfairError(f"replaying proposer {proposer!r} needs each position's suffix draft "
                            "(replay.text_drafts with the task's index)")
    gp = engine_policy(policy)
    if gp is None and kind != "model":
        raise SpecfairError("the confidence policy is replayed with the model proposer only")
    if kind not in ("model", "suffix") and context is None and "ngram" not in pre:
        raise SpecfairError(f"replaying proposer {proposer!r} needs the prompt and answer ids")
    if gp is not None:
        gp.reset()
    prompt, answer = context if context is not None else ((), ())
    ctx = (torch.tensor(list(prompt) + list(answer), dtype=torch.long)
           if kind not in ("model", "suffix") and "ngram" not in pre else None)
    n = len(match)
    for name, d in pre.items():
        if len(d.length) != n or len(d.accepted) != n:
            raise SpecfairError(f"{name} drafts of {len(d.length)} positions for a pass of {n}")
    i = 0
    sizes, acc, srcs, trees = [], [], [], []
    while i < n:
        room = n - i - 1
        src, a, tree = "model", None, ""
        if gp is None:  # confidence: up to max_gamma, stop after a draft below the threshold
            k = 0
            while k < min(policy.max_gamma, room):
                k += 1
                if conf[i + k - 1] < policy.threshold:
                    break
        else:
            k = min(gp.next_gamma(), room)
            if kind in SUFFIX_KINDS and room > 0 and pre["suffix"].length[i]:
                sd = pre["suffix"]  # a suffix draft sizes itself, whatever γ says
                src, k = "suffix", min(sd.length[i], room)
                a, tree = min(sd.accepted[i], k), sd.tree[i] if sd.tree else ""
            elif kind == "suffix":  # no suffix draft: a plain target step
                src, k = "", 0
            elif kind != "model" and (k > 0 or lookup is not None):  # N: a lookup whatever γ
                want = k if lookup is None else min(lookup, room)
                if "ngram" in pre:
                    got = min(pre["ngram"].length[i], want)
                    hit = min(pre["ngram"].accepted[i], got)
                else:
                    found = ngram_match(ctx[: len(prompt) + i + 1], want).tolist()
                    got, hit = len(found), _lead(found, answer, i + 1)
                if got:
                    src, k, a = "ngram", got, hit
                elif kind == "ngram":  # no match: a plain target step
                    src, k = "", 0
        if a is None:  # the drafter's: accepted up to the first the answer does not continue
            a = 0
            while a < k and match[i + a]:
                a += 1
        sizes.append(k)
        acc.append(a)
        srcs.append(src if k else "")
        trees.append(tree)
        if gp is not None:  # told as the engine tells it, in target-step units
            gp.timed(k, 1.0 + verify_slope * k, src if k else "")
        if gp is not None and k > 0 and (src == "model" or (src == "ngram" and lookup is None)):
            draft = k * (c if src == "model" else LOOKUP_COST)
            gp.update(k, a, draft, 1.0 + verify_slope * k)
        i += a + 1  # the accepted drafts and the target's own token
    return Replay(n, len(sizes), sum(sizes), sum(acc), tuple(sizes), tuple(acc), tuple(srcs),
                  tuple(trees) if kind in SUFFIX_KINDS else ())


def pass_of(record: dict) -> tuple[list, list]:
    """The replay input of a teacher-forced record (``match``/``conf`` per response position,
    as :func:`specfair.distill.topn.evaluate` writes them): its first entry predicts the
    answer's token 0, which the engine takes from the prefill, so it is dropped."""
    return record["match"][1:], record["conf"][1:]


def replay_all(passes: Sequence[tuple[Sequence[bool], Sequence[float]]], policy: Policy,
               c: float, verify_slope: float, prefill: Sequence[float] | None = None, *,
               proposer: str = "model", contexts: Sequence | None = None,
               drafts: Sequence[Mapping[str, TextDrafts]] | None = None) -> dict:
    """Pooled over passes (one prompt each): tokens / time, alpha = accepted / drafted.
    ``prefill``: per pass, the target's prefill of that prompt in decode-step units (plain
    decoding pays it once; speculative decoding pays it and the drafter's, ``c`` times it):
    the speed-up of the whole answer, as a wall-clock benchmark measures it; None: decoding
    steps only. ``proposer``/``contexts``/``drafts`` (one per pass): see :func:`replay`."""
    ctxs = contexts if contexts is not None else [None] * len(passes)
    pre = drafts if drafts is not None else [None] * len(passes)
    rs = [replay(m, q, policy, proposer=proposer, context=x, c=c, verify_slope=verify_slope,
                 drafts=d)
          for (m, q), x, d in zip(passes, ctxs, pre, strict=True)]  # fmt: skip
    tokens = sum(r.tokens for r in rs)
    cost = sum(r.cost(c, verify_slope) for r in rs)
    if prefill is not None:
        pre = sum(prefill)
        tokens, cost = tokens + pre, cost + pre * (1.0 + c)
    label = policy.label if isinstance(policy, Policy) else repr(policy)
    return {"policy": label, "speedup": tokens / cost,
            "alpha": sum(r.accepted for r in rs) / max(1, sum(r.drafted for r in rs)),
            "tokens_per_step": tokens / max(1, sum(r.steps for r in rs))}


# The policies specfair reports (the study, ``estimate``): fixed gamma (5), HF's heuristic
# schedule (starting at 5), HF's confidence threshold.
POLICIES = (Policy("fixed", DEFAULT_GAMMA), Policy("heuristic", DEFAULT_GAMMA, max_gamma=32),
            Policy("confidence", max_gamma=20, threshold=0.4))
PER_TASK_GAMMA = "per-task gamma (best fixed 1-10, oracle)"
# The study's fixed-gamma choices (specfair.study.policies), as labelled in summary.json
TASK_ORACLE = "per-task gamma (in-sample oracle)"
ONE_ORACLE = "one gamma (in-sample oracle)"
TASK_HELD = "per-task gamma (chosen on held-out)"
ONE_HELD = "one gamma (chosen on held-out)"


def best_fixed(passes: Sequence[tuple[Sequence[bool], Sequence[float]]], c: float,
               verify_slope: float, gammas: Sequence[int] = range(1, 11)) -> dict:
    """The fixed gamma with the highest predicted speed-up on ``passes``, chosen on the passes
    it is scored on (an upper bound for a per-task gamma)."""
    return max(({"gamma": g} | replay_all(passes, Policy("fixed", g), c, verify_slope)
                for g in gammas), key=lambda r: r["speedup"])


def predict_policies(passes: Sequence[tuple[Sequence[bool], Sequence[float]]], c: float,
                     verify_slope: float) -> dict[str, dict]:
    """Every policy of :data:`POLICIES` and the per-task best fixed gamma, replayed on one
    task's ``passes``: ``{label: {"speedup", "alpha", "tokens_per_step"[, "gamma"]}}``."""
    out = {p.label: replay_all(passes, p, c, verify_slope) for p in POLICIES}
    out[PER_TASK_GAMMA] = best_fixed(passes, c, verify_slope)
    return out

