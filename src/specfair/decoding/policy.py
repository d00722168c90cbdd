"""Drafting policies as a user picks them (``--policy`` of ``bench`` and ``generate``).

:func:`parse_policy` owns the syntax; a :class:`DraftingPolicy` makes each request's
:class:`specfair.decoding.gamma.GammaPolicy` (``for_task``) and says the drafter's confidence
threshold (``draft_threshold``):

- ``fixed:N``: N drafts per step (``--gamma N`` is its short form);
- ``heuristic``: Hugging Face's schedule (:class:`HeuristicGamma`), starting at ``--gamma``;
- ``confidence:T``: up to ``--gamma`` drafts, a step stops once the drafter's probability of its
  own draft is below T (Hugging Face's ``assistant_confidence_threshold``);
- ``table:FILE``: a ``policy.json`` (written by ``specfair estimate``): a fixed γ per task, and
  one global γ for the prompts of other tasks;
- ``adaptive``: γ chosen online per request from the acceptance of its own earlier steps, the
  measured drafter/target cost and the machine's verify curve v(k), 0 (a plain step) when no
  length is expected to pay, at most ``--gamma`` (default 12; :class:`VerifyAwareGamma`; the
  curve: :meth:`DraftingPolicy.with_verify_slope`, else fitted online per request);
- ``adaptive-flat``: the rule before the verify curve (:class:`CostAwareGamma`: a verification
  costs one step at any length, and every step drafts at least 1), kept to pair against.

``policy.json``: ``{"format": "specfair-policy", "gamma": {task: γ}, "global_gamma": γ, ...}``
plus free metadata (the split it was chosen on, the predicted speed-ups).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from specfair.decoding.gamma import (
    CostAwareGamma,
    FixedGamma,
    GammaPolicy,
    HeuristicGamma,
    VerifyAwareGamma,
    check_verify_slope,
)
from specfair.decoding.ngram import parse_proposer
from specfair.defaults import DEFAULT_GAMMA
from specfair.errors import SpecfairError
from specfair.schema import ascii_float, ascii_int, loads_json, suggest

POLICY_FILE = "policy.json"
POLICY_FORMAT = "specfair-policy"
SYNTAX = "fixed:N | heuristic | confidence:T | table:FILE | adaptive | adaptive-flat"
HEURISTIC_MAX = 32  # HeuristicGamma's cap
ADAPTIVE_MAX = 12  # CostAwareGamma's default bound (adaptive, adaptive-flat)


@dataclass(frozen=True)
class DraftingPolicy:
    """A parsed ``--policy``. ``gamma``: fixed: the γ; heuristic: the start; confidence and
    adaptive: the most drafts of a step; table: the global γ."""

    kind: str
    gamma: int
    threshold: float = 0.0
    table: dict[str, int] = field(default_factory=dict)
    source: str | None = None
    chosen_on: str | None = None  # a table's: the split its γs were chosen on
    verify_slope: float | None = None  # adaptive's verify curve (None: fitted per request)

    @property
    def spec(self) -> str:
        if self.kind in ("fixed", "confidence"):
            return f"{self.kind}:{self.gamma if self.kind == 'fixed' else f'{self.threshold:g}'}"
        return f"table:{self.source}" if self.kind == "table" else self.kind

    @property
    def draft_threshold(self) -> float:
        return self.threshold if self.kind == "confidence" else 0.0

    def for_task(self, task: str | None) -> GammaPolicy:
        """A fresh γ policy for a request of ``task`` (None: unknown)."""
        if self.kind == "heuristic":
            return HeuristicGamma(start=self.gamma, max_gamma=max(self.gamma, HEURISTIC_MAX))
        if self.kind == "adaptive":
            return VerifyAwareGamma(max_gamma=self.gamma, verify_slope=self.verify_slope)
        if self.kind == "adaptive-flat":
            return CostAwareGamma(max_gamma=self.gamma)
        if self.kind == "table":
            return FixedGamma(self.table.get(task, self.gamma) if task is not None else self.gamma)
        return FixedGamma(self.gamma)

    def check_tasks(self, tasks) -> None:
        """Refuse a table's task that is not one of ``tasks`` (the suite's), with the closest
        name: its γ would silently never be used."""
        for t in self.table:
            if t not in tasks:
                raise SpecfairError(f"policy table {self.source}: task {t!r} is not one of the "
                                    f"suite's tasks{suggest(t, tasks)}")

    def with_verify_slope(self, slope: float | None) -> DraftingPolicy:
        """This policy with the machine's verify curve v(k) = 1 + slope (k - 1) (``adaptive``
        only: other policies do not use one and are returned as they are; a curve of the wrong
        shape is refused)."""
        if self.kind != "adaptive" or slope is None:
            return self
        return replace(self, verify_slope=check_verify_slope(slope, self.gamma))

    def settings(self) -> dict:
        """The run-settings fields of this policy (a table's content included, so that a rerun
        with an edited table is refused)."""
        out: dict = {"gamma": self.gamma, "policy": self.spec}
        if self.kind == "table":
            out["policy_table"] = {"gamma": dict(self.table), "global_gamma": self.gamma,
                                   "split": self.chosen_on}  # fmt: skip
        if self.verify_slope is not None:
            out["verify_slope"] = self.verify_slope
        return out


def _int_at_least_1(value, what: str) -> int:
    """``value`` (an option's or a file's: an int, not a bool, not a string) if >= 1."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SpecfairError(f"{what} must be an integer >= 1, got {value!r}")
    return value


def parse_policy(spec: str | None, gamma: int | None = None) -> DraftingPolicy:
    """``--policy`` (None: ``fixed``) and ``--gamma`` (None: not given) as one policy; a
    ``--gamma`` that contradicts the policy is refused."""
    if gamma is not None:
        _int_at_least_1(gamma, "--gamma")
    if spec is None:
        return DraftingPolicy("fixed", gamma or DEFAULT_GAMMA)
    kind, _, arg = str(spec).strip().partition(":")
    if kind == "fixed":
        n = _int_at_least_1(arg if ascii_int(arg) is None else ascii_int(arg),
                            f"--policy {spec}: N of fixed:N")
        if gamma is not None and gamma != n:
            raise SpecfairError(f"--gamma {gamma} contradicts --policy {spec}; give one of them")
        return DraftingPolicy("fixed", n)
    if kind in ("heuristic", "adaptive", "adaptive-flat") and not arg:
        default = DEFAULT_GAMMA if kind == "heuristic" else ADAPTIVE_MAX
        return DraftingPolicy(kind, gamma or default)
    if kind == "confidence":
        t = ascii_float(arg)
        if t is None or not 0.0 < t < 1.0:
            raise SpecfairError(f"--policy {spec}: T of confidence:T must be a number in (0, 1)")
        return DraftingPolicy("confidence", gamma or DEFAULT_GAMMA, threshold=t)
    if kind == "table" and arg:
        if gamma is not None:
            raise SpecfairError(f"--gamma {gamma} contradicts --policy {spec} (γ per task)")
        table, global_gamma, split = read_policy_table(arg)
        return DraftingPolicy("table", global_gamma, table=table, source=arg, chosen_on=split)
    raise SpecfairError(f"--policy {spec!r}: expected {SYNTAX}")


def parse_variant(spec: str) -> tuple[str, DraftingPolicy, str]:
    """A drafting variant ``POLICY[+PROPOSER]`` (the proposer defaults to ``model``) as (its
    label ``policy.spec+proposer``, the policy, the proposer); a bad part is a SpecfairError."""
    pol_spec, _, proposer = str(spec).partition("+")
    proposer = proposer or "model"
    parse_proposer(proposer)
    pol = parse_policy(pol_spec)
    return f"{pol.spec}+{proposer}", pol, proposer


def read_policy_table(path: str | Path) -> tuple[dict[str, int], int, str | None]:
    """(γ per task, global γ, the split they were chosen on) of a ``policy.json``; any defect
    is one error naming the file."""
    p = Path(path)
    if not p.is_file():
        raise SpecfairError(f"policy table {p}: no such file")
    try:
        doc = loads_json(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:  # not UTF-8, not JSON, nested too deeply
        raise SpecfairError(f"policy table {p}: not a JSON file ({e})") from e
    if not isinstance(doc, dict) or doc.get("format") != POLICY_FORMAT:
        raise SpecfairError(f"policy table {p}: not a {POLICY_FORMAT} file (format key)")
    per_task = doc.get("gamma")
    if not isinstance(per_task, dict):
        raise SpecfairError(f"policy table {p}: 'gamma' must map tasks to integers >= 1")
    table = {str(t): _int_at_least_1(g, f"policy table {p}: gamma of {t!r}")
             for t, g in per_task.items()}  # fmt: skip
    global_gamma = _int_at_least_1(doc.get("global_gamma"), f"policy table {p}: global_gamma")
    split = doc.get("split")
    return table, global_gamma, split if isinstance(split, str) else None


def policy_table(per_task: dict[str, int], global_gamma: int, **meta) -> dict:
    """A ``policy.json`` document (``meta``: e.g. the split it was chosen on)."""
    return {"format": POLICY_FORMAT, "gamma": dict(per_task), "global_gamma": global_gamma,
            **meta}  # fmt: skip
