"""What a wrong route costs: the teacher-forced α of every per-task copy (and the base drafter)
on every task's prompts, and the α of oracle vs classifier routing, from the same passes.

Per prompt and drafter (each copy and the base), :func:`specfair.measure.estimate.
teacher_forced_stats` along the target's answers (the estimate's exact full-vocabulary α at
``temperature``); per task the *pooled* α (Σ α over positions / positions, see CONTRACTS.md).
Oracle routing drafts each prompt with its own task's copy (the base for a task without one),
classifier routing with the copy ``route(prompt)`` picks (None: the base).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from specfair.measure.estimate import teacher_forced_stats
from specfair.measure.responses import ensure_responses, read_responses

BASE = "(base)"


def _pooled(rows: list[tuple[float, int]]) -> float | None:
    n = sum(k for _, k in rows)
    return sum(a for a, _ in rows) / n if n else None


def prompt_alphas(target, router, recs: Sequence[dict], *, temperature: float = 1.0,
                  chunk_size: int = 32) -> dict[str, tuple[float, int]]:
    """``{copy or BASE: (Σ α, positions)}`` of one prompt's response records."""
    out = {}
    for copy in [None, *router.tasks]:
        a = n = 0
        for r in recs:
            s = teacher_forced_stats(target, router.for_task(copy), r["prompt_ids"],
                                     r["response_ids"], temperature=temperature,
                                     chunk_size=chunk_size)
            a, n = a + s["alpha_sum"], n + s["n_positions"]
        out[copy if copy is not None else BASE] = (a, n)
    return out


def copy_task_alpha(target, router, tokenizer, prompts: Sequence, responses_path: str | Path,
                    *, max_new_tokens: int = 128, temperature: float = 1.0,
                    chunk_size: int = 32) -> dict:
    """``{"matrix": {copy: {task: α}}, "oracle": {task: α}, "routed": {task: α},
    "routes": {task: {copy: count}}}`` over ``prompts`` (the target's greedy answers cached in
    ``responses_path``, generated where missing). ``router``: a ``TaskRoutedDrafter`` (then
    routed = oracle) or a ``ClassifierRoutedDrafter`` (its ``route(prompt)``)."""
    cache = read_responses(responses_path)
    per: dict[str, list[dict]] = {}
    routes: dict[str, dict[str, int]] = {}
    route = getattr(router, "route", None)
    for p in prompts:
        recs = ensure_responses(target, tokenizer, p, responses_path, cache=cache,
                                max_new_tokens=max_new_tokens)
        row = prompt_alphas(target, router, recs, temperature=temperature,
                            chunk_size=chunk_size)
        own = p.task if p.task in router.tasks else BASE
        picked = route(p) if callable(route) else p.task
        picked = picked if picked in router.tasks else BASE
        per.setdefault(p.task, []).append({**row, "_oracle": row[own], "_routed": row[picked]})
        counts = routes.setdefault(p.task, {})
        counts[picked] = counts.get(picked, 0) + 1
    copies = [*router.tasks, BASE]
    return {
        "matrix": {c: {t: _pooled([r[c] for r in rows]) for t, rows in per.items()}
                   for c in copies},
        "oracle": {t: _pooled([r["_oracle"] for r in rows]) for t, rows in per.items()},
        "routed": {t: _pooled([r["_routed"] for r in rows]) for t, rows in per.items()},
        "routes": routes, "n": {t: len(rows) for t, rows in per.items()},
        "temperature": temperature,
    }
