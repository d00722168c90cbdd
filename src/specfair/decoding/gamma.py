"""Policies that choose the number of drafts gamma of each speculative step.

A policy is asked ``next_gamma()`` before each step; after it, the decoder tells it the step's
verification with ``timed(drafted, verify_s, source)`` (every step: ``drafted`` 0 is a plain
target step; ``source`` what drafted: "model", "ngram" or "") and then, for the steps the policy
sized that drafted, the outcome with ``update(gamma, accepted, draft_s, verify_s)``. The
decoder calls ``reset()`` at the start of each generation, so results do not depend on earlier
calls. ``max_gamma`` bounds what ``next_gamma`` may return (the decoder sizes its buffers with
it); only :class:`VerifyAwareGamma` ever returns 0 (a step without drafts).
"""

from __future__ import annotations

import math
from typing import Protocol, runtime_checkable

import numpy as np

from specfair.decoding.theory import expected_tokens_per_step, optimal_gamma
from specfair.errors import SpecfairError


@runtime_checkable
class GammaPolicy(Protocol):
    max_gamma: int

    def reset(self) -> None: ...

    def next_gamma(self) -> int: ...

    def timed(self, drafted: int, verify_s: float, source: str) -> None: ...

    def update(self, gamma: int, accepted: int, draft_s: float, verify_s: float) -> None: ...


class _Untimed:
    """A policy that ignores the verification times."""

    def timed(self, drafted: int, verify_s: float, source: str) -> None:
        pass


def _check_gamma(value, name: str = "gamma") -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecfairError(f"{name} must be an integer >= 1, got {value!r}")
    return value


class FixedGamma(_Untimed):
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


class HeuristicGamma(_Untimed):
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
        if gamma < 1:
            return
        if accepted >= gamma:
            self.gamma = min(self.gamma + 2, self.max_gamma)
        else:
            self.gamma = max(1, self.gamma - 1)

    def __repr__(self) -> str:
        return f"HeuristicGamma(start={self.start}, max_gamma={self.max_gamma})"


class CostAwareGamma(_Untimed):
    """Pick gamma each step to maximise the expected tokens per second of Leviathan et al.,
    (1 - a^(g+1)) / ((1 - a)(g c + 1)), over g in 1..``max_gamma`` (``--policy adaptive-flat``:
    a verification costs one step at any length, and a step always drafts).

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


def check_verify_slope(slope, max_gamma: int) -> float:
    """``slope`` of a verify curve v(k) = 1 + slope (k - 1) (k: tokens a verification scores,
    in plain-step units) if it is a finite number with v(k) > 0 up to ``max_gamma + 1`` tokens;
    a curve of any other shape is refused."""
    if isinstance(slope, bool) or not isinstance(slope, (int, float)) or not math.isfinite(slope):
        raise SpecfairError(f"verify slope must be a finite number, got {slope!r}")
    if 1.0 + slope * max_gamma <= 0.0:
        raise SpecfairError(f"verify slope {slope:g}: v({max_gamma + 1}) = "
                            f"{1.0 + slope * max_gamma:g} <= 0 is not a cost")
    return float(slope)


class VerifyAwareGamma(CostAwareGamma):
    """:class:`CostAwareGamma` that prices the verification too, and may draft nothing.

    Each step's g in 0..``max_gamma`` maximises the expected tokens per unit of time
    E[accepted + 1 | g] / (g c' + v(g + 1)), where E = (1 - a^(g+1)) / (1 - a) and
    v(k) = 1 + s (k - 1) is the cost of a target forward over k tokens in plain-step units:
    g = 0 is a plain step, 1 token for v(1) = 1. ``a`` and ``c`` are learnt as by
    :class:`CostAwareGamma` (c measured in plain-step units: the step's verify time divided by
    v(g + 1)); ``c' = c x`` the share of recent steps the drafter model drafted, for a lookup
    draft (``timed(..., source="ngram")``) costs nothing to propose, only its verification.
    The first step after an off one (the drafter then also reads the plain steps' tokens) does
    not teach ``c``.

    The verify curve: ``verify_slope`` s when given (measured once per machine and cached,
    :func:`specfair.measure.costs.verify_curve`); None: fitted online from this request's own
    verifications (least squares of seconds on drafts over every step :meth:`timed` reports,
    plain steps included: s = slope / intercept, at least 0), ``slope_prior`` until two
    different lengths have been timed.

    The off arm: when no g >= 1 is expected to beat a plain step, the step drafts nothing, and
    the acceptance counts fade (times ``decay``) on each such step, so its evidence weighs less
    the longer it is off. It probes (drafts g = 1) when an optimistic acceptance,
    (A + ``explore``) / (A + R + ``explore``), says one draft would pay: the fading makes that
    happen after a few steps (the worse the acceptance and the steeper the curve, the later),
    so it never switches off for good, and one accepted probe after a long bad streak is
    enough to switch it back on.
    """

    def __init__(self, c: float | None = None, alpha_prior: float = 0.7, *,
                 verify_slope: float | None = None, slope_prior: float = 0.0,
                 explore: float = 0.5, **kw) -> None:  # fmt: skip
        super().__init__(c, alpha_prior, **kw)
        if verify_slope is not None:
            verify_slope = check_verify_slope(verify_slope, self.max_gamma)
        self.slope_fixed = verify_slope
        self.slope_prior = check_verify_slope(slope_prior, self.max_gamma)
        if not explore > 0:
            raise SpecfairError(f"explore must be > 0, got {explore}")
        self.explore = explore
        self.reset()

    def reset(self) -> None:
        super().reset()
        self.model_share = 1.0  # EMA: the share of sized steps the drafter model drafted
        self.source = "model"  # what drafted the last step timed
        self.g_prev = self.g_last = 1  # the g said for the step before this one, for this one
        self.fit = np.zeros(5)  # online verify fit: n, sum g, sum g^2, sum t, sum g t

    @property
    def verify_slope(self) -> float:
        """s of v(k) = 1 + s (k - 1): the given one, else this request's fit."""
        if self.slope_fixed is not None:
            return self.slope_fixed
        n, sg, sgg, st, sgt = self.fit
        den = n * sgg - sg * sg
        if n < 2 or den <= 1e-9 * max(1.0, n * sgg):
            return self.slope_prior
        beta = (n * sgt - sg * st) / den
        alpha = (st - beta * sg) / n
        return max(0.0, beta / alpha) if alpha > 0 else self.slope_prior

    def values(self, alpha: float) -> np.ndarray:
        """Expected tokens per plain-step time of g = 0..max_gamma drafts (g = 0: 1)."""
        g = np.arange(self.max_gamma + 1, dtype=float)
        cost = g * self.c * self.model_share + 1.0 + self.verify_slope * g
        return expected_tokens_per_step(alpha, g) / cost

    def choose(self) -> int:
        """The next step's g, without changing any state."""
        vals = self.values(self.alpha)
        g = 1 + int(np.argmax(vals[1:]))  # the smallest best g >= 1 (CostAwareGamma's when flat)
        if vals[g] >= 1.0:
            return g
        optimistic = (self.acc + self.explore) / (self.acc + self.rej + self.explore)
        return 1 if self.values(optimistic)[1] >= 1.0 else 0  # 1: a probe

    def next_gamma(self) -> int:
        g = self.choose()
        self.g_prev, self.g_last = self.g_last, g
        if g == 0:  # a step without drafts: the evidence fades
            self.acc *= self.decay
            self.rej *= self.decay
        return g

    def timed(self, drafted: int, verify_s: float, source: str) -> None:
        self.source = source
        if self.slope_fixed is None and verify_s > 0 and math.isfinite(verify_s):
            self.fit += (1.0, drafted, drafted * drafted, verify_s, drafted * verify_s)

    def update(self, gamma: int, accepted: int, draft_s: float, verify_s: float) -> None:
        if gamma < 1:
            return
        self.acc = self.decay * self.acc + accepted
        self.rej = self.decay * self.rej + (1.0 if accepted < gamma else 0.0)
        model = self.source == "model"  # a lookup (or index) draft costs nothing to propose
        self.model_share = self.decay * self.model_share + (1.0 - self.decay) * model
        # the first drafter step after an off one also feeds it the tokens of the plain steps
        # (one forward over them): not what a draft costs, so c does not learn from it
        if model and self.g_prev > 0 and self.c_fixed is None and verify_s > 0 and draft_s > 0:
            plain_s = verify_s / (1.0 + self.verify_slope * gamma)  # a plain step's time
            self.c = self.decay * self.c + (1.0 - self.decay) * (draft_s / gamma) / plain_s

    def __repr__(self) -> str:
        return (f"VerifyAwareGamma(c={self.c_fixed}, alpha_prior={self.alpha_prior}, "
                f"max_gamma={self.max_gamma}, verify_slope={self.slope_fixed})")


def as_policy(gamma: int | GammaPolicy) -> GammaPolicy:
    """An int becomes ``FixedGamma(gamma)``; a policy is returned as is."""
    if isinstance(gamma, int) and not isinstance(gamma, bool):
        return FixedGamma(gamma)
    if isinstance(gamma, GammaPolicy):
        return gamma
    raise SpecfairError(f"gamma must be an int >= 1 or a GammaPolicy, got {gamma!r}")
