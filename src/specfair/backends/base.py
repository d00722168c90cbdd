"""What every engine returns and what :func:`specfair.measure.bench.run_bench` needs from one
(the bottom of :mod:`specfair.backends`; the engines import it, not the package)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from specfair.errors import SpecfairError


@dataclass
class EngineResult:
    """One generation by an engine that reports counters rather than per-step records.

    ``tokens``: new tokens (the EOS token included when generation stopped on it, as in the hf
    records); ``wall_s``: prompt processing + generation, as timed by the engine where it
    times them (llama.cpp: ``prompt_ms + predicted_ms``), else around the call; ``drafted`` /
    ``accepted``: draft tokens proposed / accepted; ``n_drafts``: verification steps that
    carried drafts (None = the engine does not say); ``accepted_per_pos[i]``: steps whose draft
    position i was accepted (None = not given); ``extra``: engine-specific fields copied into
    the record under ``engine`` (e.g. llama.cpp's ``timings``).
    """

    tokens: list[int]
    wall_s: float
    prefill_s: float = 0.0
    stop_reason: str = "max_tokens"
    drafted: int = 0
    accepted: int = 0
    n_drafts: int | None = None
    accepted_per_pos: list[int] | None = None
    gamma: int | None = None
    extra: dict = field(default_factory=dict)
    steps: None = None  # marks "no per-step records" for run_prompt


@runtime_checkable
class Backend(Protocol):
    """What :func:`specfair.measure.bench.run_bench` needs from an engine."""

    name: str  # "hf" | "llamacpp" | "vllm"
    tokenizer: Any  # HF tokenizer used to build prompt ids (chat template)
    target_label: str
    drafter_label: str

    def generate(
        self, mode: str, ids: Sequence[int], *, gamma: int, max_new_tokens: int,
        temperature: float, top_p: float, top_k: int, seed: int,
    ):  # fmt: skip
        """``mode`` "ar" (target alone) or "sd" (with the drafter); ``ids`` the prompt."""

    def info(self) -> dict:
        """Engine name, version/build and settings, for ``bench_summary.json``'s meta."""

    def close(self) -> None:
        """Release the engine (stop servers); safe to call twice."""


def lengths_from_positions(
    n_drafts: int, accepted_per_pos: Sequence[int]
) -> tuple[list[int], int | None]:
    """The multiset of per-step accepted lengths (accepted + 1, order unknown) and the
    number of steps that rejected a draft, from per-position acceptance counters.

    ``accepted_per_pos[i]`` = steps that accepted draft position i; a step that accepted j drafts
    counts at positions 0..j-1, so #steps with exactly j accepted = pos[j-1] - pos[j]. Rejections
    (steps with accepted < drafted) = n_drafts - pos[k-1] when every step drafted k tokens.
    """
    pos = [int(x) for x in accepted_per_pos]
    if any(b > a for a, b in zip(pos, pos[1:], strict=False)) or (pos and pos[0] > n_drafts):
        raise SpecfairError(f"inconsistent per-position counters: {n_drafts} steps, {pos}")
    bounds = [n_drafts, *pos, 0]
    lengths: list[int] = []
    for j in range(len(pos) + 1):
        lengths += [j + 1] * (bounds[j] - bounds[j + 1])
    rejections = n_drafts - pos[-1] if pos else None
    return lengths, rejections


def add_engine_counts(rec: dict, res: EngineResult) -> None:
    """Add one SD turn's engine counters to a bench record (see docs/CONTRACTS.md)."""
    rec["drafted"] += int(res.drafted)
    rec["accepted"] += int(res.accepted)
    known = res.n_drafts is not None and res.accepted_per_pos is not None
    full = known and res.gamma is not None and res.drafted == res.n_drafts * res.gamma
    if known:
        lengths, rej = lengths_from_positions(res.n_drafts, res.accepted_per_pos)
        rec["accepted_lengths"] += lengths
        rec.setdefault("accepted_per_pos", [])
        acc = rec["accepted_per_pos"]
        for i, v in enumerate(res.accepted_per_pos):
            if i < len(acc):
                acc[i] += int(v)
            else:
                acc.append(int(v))
    else:
        rej = None
    # rejections need every step to have drafted the full gamma (else a short fully accepted
    # step would count as rejected); unknown (None) otherwise, and then for the whole record
    if not full or rej is None or rec.get("rejections") is None:
        rec["rejections"] = None
    else:
        rec["rejections"] += rej
    rec["accepted_lengths_source"] = "per_position_counters" if known else None
    if res.extra:
        rec.setdefault("engine", []).append(res.extra)
