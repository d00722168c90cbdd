"""Result types of the decoders (see docs/CONTRACTS.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

StopReason = Literal["eos", "max_tokens"]


@dataclass(frozen=True)
class StepRecord:
    """One decoding step: a draft-and-verify round (speculative) or one target forward (AR).

    ``gamma``: drafts requested this step (0 for an autoregressive step or a final step where
    only one token was left to produce); ``drafted``: drafts actually produced (= gamma);
    ``accepted``: drafts accepted by the verification rule (before any truncation at EOS);
    ``accepted_len``: tokens this step appended to the output, bonus/correction token included
    (= accepted + 1 unless the block was truncated at EOS); ``draft_s`` / ``verify_s``: seconds
    spent in the drafter's forwards + draft sampling / the target's forward + acceptance;
    ``proposer``: what drafted ("model": the drafter, "ngram": prompt lookup; "" when nothing
    was drafted).
    """

    gamma: int
    drafted: int
    accepted: int
    accepted_len: int
    draft_s: float
    verify_s: float
    proposer: str = ""


@dataclass
class GenerationResult:
    """Output of ``speculative_generate`` / ``autoregressive_generate``.

    ``tokens`` are the new tokens only (the EOS token included when generation stopped on it).
    The first new token comes from the prefill forward of the target and belongs to no step, so
    ``sum(s.accepted_len for s in steps) == len(tokens) - 1`` (for a non-empty output).
    ``prefill_s`` covers the prompt forward(s) of the target (and the drafter) plus the first
    token; ``wall_s`` the whole call up to the last token (text decoding excluded).
    """

    tokens: list[int]
    text: str | None = None
    steps: list[StepRecord] = field(default_factory=list)
    prefill_s: float = 0.0
    wall_s: float = 0.0
    stop_reason: StopReason = "max_tokens"

    @property
    def n_drafted(self) -> int:
        return sum(s.drafted for s in self.steps)

    @property
    def n_accepted(self) -> int:
        return sum(s.accepted for s in self.steps)

    @property
    def n_rejections(self) -> int:
        """Steps in which a draft was rejected (at most one rejection per step)."""
        return sum(1 for s in self.steps if s.drafted > 0 and s.accepted < s.drafted)

    @property
    def alpha(self) -> float:
        """Accepted / drafted (the contract's acceptance rate); 0.0 when nothing was drafted.

        Drafts after the first rejection of a step are discarded without being judged, so this
        underestimates the per-token acceptance probability of Leviathan et al.; see
        ``alpha_geometric`` for the estimate that their formulas expect.
        """
        d = self.n_drafted
        return self.n_accepted / d if d else 0.0

    @property
    def alpha_geometric(self) -> float:
        """Maximum-likelihood per-token acceptance rate under the i.i.d. model of Leviathan et
        al.: accepted / (accepted + rejections); 0.0 when nothing was drafted."""
        a, r = self.n_accepted, self.n_rejections
        return a / (a + r) if a + r else 0.0

    @property
    def tau(self) -> float:
        """Mean tokens per speculative step (accepted drafts + the bonus/correction token), over
        the steps that drafted; for an AR result (no drafts) the mean over all steps (= 1.0)."""
        spec = [s for s in self.steps if s.drafted > 0] or self.steps
        return sum(s.accepted_len for s in spec) / len(spec) if spec else 0.0

    @property
    def tokens_per_s(self) -> float:
        return len(self.tokens) / self.wall_s if self.wall_s > 0 else 0.0

    def by_proposer(self) -> dict[str, dict[str, int]]:
        """Per proposer ("model", "ngram"): the steps it drafted, its drafts and acceptances."""
        out: dict[str, dict[str, int]] = {}
        for s in self.steps:
            if s.drafted > 0:
                d = out.setdefault(s.proposer, {"steps": 0, "drafted": 0, "accepted": 0})
                d["steps"] += 1
                d["drafted"] += s.drafted
                d["accepted"] += s.accepted
        return out

    @property
    def accepted_lengths(self) -> list[int]:
        return [s.accepted_len for s in self.steps if s.drafted > 0]
