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

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from specfair.decoding.gamma import FixedGamma, GammaPolicy, HeuristicGamma
from specfair.decoding.ngram import SUFFIX_KINDS, ngram_match, parse_proposer
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
    sources: tuple[str, ...] = ()  # per step, what drafted ("model", "ngram", ""); () all model

    def cost(self, c: float, verify_slope: float) -> float:
        """Time in target-step units (a lookup's drafts cost nothing to draft)."""
        srcs = self.sources or ("model",) * len(self.draft_sizes)
        return sum(step_cost(k, c if s != "ngram" else 0.0, verify_slope)
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


def replay(match: Sequence[bool], conf: Sequence[float], policy: Policy | GammaPolicy, *,
           proposer: str = "model", context: tuple[Sequence[int], Sequence[int]] | None = None,
           c: float = 0.0, verify_slope: float = 0.0) -> Replay:  # fmt: skip
    """``match[j]`` / ``conf[j]``: the drafter at the position of the answer's token ``j + 1``
    (token 0 comes from the prefill). As in the engine, a step drafts at most the tokens still
    to produce minus one (a step with nothing to draft is a plain target step).

    ``proposer`` (:func:`specfair.decoding.ngram.parse_proposer`): ``ngram[:N]`` and
    ``hybrid[:N]`` look up drafts as the engine does, in ``context`` = (the prompt's ids, the
    answer's ids), and the policy sizes and hears the steps the engine's does. ``policy``: a
    :class:`Policy`, or an engine :class:`GammaPolicy` (e.g. ``CostAwareGamma``: it is told
    each step's time in target steps, ``c`` a draft, :data:`LOOKUP_COST` a looked-up one,
    ``1 + verify_slope k`` the verification, every step's through ``timed`` as in the engine;
    fresh state per call). A policy may say 0 (``VerifyAwareGamma``'s off arm): a plain step
    (one that ``ngram:N``/``hybrid:N`` still looks up), priced 1."""
    kind, lookup = parse_proposer(proposer)
    if kind in SUFFIX_KINDS:  # its drafts depend on the index: not replayed (yet)
        raise SpecfairError(f"replaying proposer {proposer!r}: the suffix proposers are timed "
                            "in the engine, not replayed")
    gp = engine_policy(policy)
    if gp is None and kind != "model":
        raise SpecfairError("the confidence policy is replayed with the model proposer only")
    if kind != "model" and context is None:
        raise SpecfairError(f"replaying proposer {proposer!r} needs the prompt and answer ids")
    if gp is not None:
        gp.reset()
    prompt, answer = context if context is not None else ((), ())
    ctx = torch.tensor(list(prompt) + list(answer), dtype=torch.long) if kind != "model" else None
    n = len(match)
    i = 0
    sizes, acc, srcs = [], [], []
    while i < n:
        room = n - i - 1
        src, drafts = "model", None
        if gp is None:  # confidence: up to max_gamma, stop after a draft below the threshold
            k = 0
            while k < min(policy.max_gamma, room):
                k += 1
                if conf[i + k - 1] < policy.threshold:
                    break
        else:
            k = min(gp.next_gamma(), room)
            if kind != "model" and (k > 0 or lookup is not None):  # N: a lookup whatever γ
                want = k if lookup is None else min(lookup, room)
                drafts = ngram_match(ctx[: len(prompt) + i + 1], want).tolist()
                if drafts:
                    src, k = "ngram", len(drafts)
                elif kind == "ngram":  # no match: a plain target step
                    src, k = "", 0
        # the drafts are accepted up to the first the target's answer does not continue with
        hits = match[i:] if src != "ngram" else [d == answer[i + 1 + j]
                                                 for j, d in enumerate(drafts)]  # fmt: skip
        a = 0
        while a < k and hits[a]:
            a += 1
        sizes.append(k)
        acc.append(a)
        srcs.append(src if k else "")
        if gp is not None:  # told as the engine tells it, in target-step units
            gp.timed(k, 1.0 + verify_slope * k, src if k else "")
        if gp is not None and k > 0 and (lookup is None or src == "model"):
            draft = k * (c if src == "model" else LOOKUP_COST)
            gp.update(k, a, draft, 1.0 + verify_slope * k)
        i += a + 1  # the accepted drafts and the target's own token
    return Replay(n, len(sizes), sum(sizes), sum(acc), tuple(sizes), tuple(acc), tuple(srcs))


def pass_of(record: dict) -> tuple[list, list]:
    """The replay input of a teacher-forced record (``match``/``conf`` per response position,
    as :func:`specfair.distill.topn.evaluate` writes them): its first entry predicts the
    answer's token 0, which the engine takes from the prefill, so it is dropped."""
    return record["match"][1:], record["conf"][1:]


def replay_all(passes: Sequence[tuple[Sequence[bool], Sequence[float]]], policy: Policy,
               c: float, verify_slope: float, prefill: Sequence[float] | None = None, *,
               proposer: str = "model", contexts: Sequence | None = None) -> dict:
    """Pooled over passes (one prompt each): tokens / time, alpha = accepted / drafted.
    ``prefill``: per pass, the target's prefill of that prompt in decode-step units (plain
    decoding pays it once; speculative decoding pays it and the drafter's, ``c`` times it):
    the speed-up of the whole answer, as a wall-clock benchmark measures it; None: decoding
    steps only. ``proposer``/``contexts`` (one per pass): see :func:`replay`."""
    ctxs = contexts if contexts is not None else [None] * len(passes)
    rs = [replay(m, q, policy, proposer=proposer, context=x, c=c, verify_slope=verify_slope)
          for (m, q), x in zip(passes, ctxs, strict=True)]  # fmt: skip
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

