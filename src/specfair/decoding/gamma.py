"""Policies that choose the number of drafts gamma of each speculative step.

A policy is asked ``next_gamma()`` before each step and told the outcome with
``update(gamma, accepted, draft_s, verify_s)`` after it; the decoder calls ``reset()`` at the
start of each generation, so results do not depend on earlier calls. ``max_gamma`` bounds what
``next_gamma`` may return (the decoder sizes its buffers with it).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from specfair.decoding.theory import optimal_gamma
from specfair.errors import SpecfairError


@runtime_checkable
class GammaPolicy(Protocol):
    max_gamma: int

    def reset(self) -> None: ...

    def next_gamma(self) -> int: ...

    def update(self, gamma: int, accepted: int, draft_s: float, verify_s: float) -> None: ...


def _check_gamma(value, name: str = "gamma") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecfairError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class FixedGamma:
    """The same gamma at every step."""

    def __init__(self, gamma: int) -> None:
        self.gamma = self.max_gamma = _check_gamma(gamma)

    def reset(self) -> None:
        pass

    def next_gamma(self) -> int:
        return self.gamma

    def update(self, gamma: int, accepted: int, draft_s: float, verify_s: float) -> None:
        pass

    def __repr__(self) -> str:
        return f"FixedGamma({self.gamma})"


class HeuristicGamma:
    """Hugging Face's "heuristic" schedule: start at ``start``; +2 after a step whose drafts were
    all accepted, -1 (not below 1) otherwise; capped at ``max_gamma``."""

    def __init__(self, start: int = 5, max_gamma: int = 32) -> None:
        self.start = _check_gamma(start, "start")
        self.max_gamma = _check_gamma(max_gamma, "max_gamma")
        if start > max_gamma:
            raise SpecfairError(f"start ({start}) must be <= max_gamma ({max_gamma})")
        self.gamma = start

    def reset(self) -> None:
        self.gamma = self.start

    def next_gamma(self) -> int:
        return self.gamma

    def update(self, gamma: int, accepted: int, draft_s: float, verify_s: float) -> None:
        if accepted >= gamma:
            self.gamma = min(self.gamma + 2, self.max_gamma)
        else:
            self.gamma = max(1, self.gamma - 1)

    def __repr__(self) -> str:
        return f"HeuristicGamma(start={self.start}, max_gamma={self.max_gamma})"


class CostAwareGamma:
    """Pick gamma each step to maximise the expected tokens per second of Leviathan et al.,
    (1 - a^(g+1)) / ((1 - a)(g c + 1)), over g in 1..``max_gamma``.

    ``a`` is a running estimate of the acceptance rate: exponentially decayed counts of accepted
    drafts A and of rejections R (at most one per step), a = A / (A + R), started from
    ``alpha_prior`` with weight ``prior_strength`` pseudo-trials; each step multiplies the counts
    by ``decay`` before adding its own. ``c`` (drafter forward time / target forward time) is
    fixed when given; when None it is an EMA (weight ``1 - decay`` per step, starting from
    ``c_prior``) of (draft_s / gamma) / verify_s measured at each step.
    """

    def __init__(
        self,
        c: float | None = None,
        alpha_prior: float = 0.7,
        *,
        max_gamma: int = 12,
        decay: float = 0.9,
        prior_strength: float = 4.0,
        c_prior: float = 0.4,
    ) -> None:
        if c is not None and not c >= 0:
            raise SpecfairError(f"c must be >= 0, got {c}")
        if not 0.0 <= alpha_prior <= 1.0:
            raise SpecfairError(f"alpha_prior must be in [0, 1], got {alpha_prior}")
        if not 0.0 <= decay <= 1.0:
            raise SpecfairError(f"decay must be in [0, 1], got {decay}")
        if not prior_strength > 0:
            raise SpecfairError(f"prior_strength must be > 0, got {prior_strength}")
        self.c_fixed = c
        self.alpha_prior = alpha_prior
        self.max_gamma = _check_gamma(max_gamma, "max_gamma")
        self.decay = decay
        self.prior_strength = prior_strength
        self.c_prior = c_prior
        self.reset()

    def reset(self) -> None:
        self.acc = self.alpha_prior * self.prior_strength
        self.rej = (1.0 - self.alpha_prior) * self.prior_strength
        self.c = self.c_fixed if self.c_fixed is not None else self.c_prior

    @property
    def alpha(self) -> float:
        return self.acc / (self.acc + self.rej)

    def next_gamma(self) -> int:
        return optimal_gamma(self.alpha, self.c, self.max_gamma)

    def update(self, gamma: int, accepted: int, draft_s: float, verify_s: float) -> None:
        if gamma < 1:
            return
        self.acc = self.decay * self.acc + accepted
        self.rej = self.decay * self.rej + (1.0 if accepted < gamma else 0.0)
        if self.c_fixed is None and verify_s > 0 and draft_s > 0:
            c_obs = (draft_s / gamma) / verify_s
            self.c = self.decay * self.c + (1.0 - self.decay) * c_obs

    def __repr__(self) -> str:
        return (
            f"CostAwareGamma(c={self.c_fixed}, alpha_prior={self.alpha_prior}, "
            f"max_gamma={self.max_gamma})"
        )


def as_policy(gamma: int | GammaPolicy) -> GammaPolicy:
    """An int becomes ``FixedGamma(gamma)``; a policy is returned as is."""
    if isinstance(gamma, int) and not isinstance(gamma, bool):
        return FixedGamma(gamma)
    if isinstance(gamma, GammaPolicy):
        return gamma
    raise SpecfairError(f"gamma must be an int >= 1 or a GammaPolicy, got {gamma!r}")
