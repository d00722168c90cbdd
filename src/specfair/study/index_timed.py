"""The timed stage's index variants (``time_index``, default off; issue 30): with the index arm
(:mod:`specfair.study.index_arm`), the timed stage (:mod:`specfair.study.timed`) times the
index of the arms' training text as deployed, in the same prompt-by-prompt loop as the
drafters:

* ``index``: ``--proposer suffix:DIR`` (the task's index and the request's own tokens, no
  drafter);
* ``<arm>+index``: ``--proposer suffix-hybrid:DIR`` with the fine-tuned arm of
  ``same_data.json`` (the index's draft first, else prompt lookup, else that drafter), under the
  stage's fixed γ.

Each runs its own AR runs beside its SD runs (a bench file holds one proposer's settings, so
the base drafter's AR records are not shared); ``vs_base`` pairs its speed-ups with the base
drafter's by prompt. Its predicted speed-up replays the same prompts' index records
(``indexes/eval.jsonl``) and, for ``<arm>+index``, the arm's teacher-forced passes, with
oracle routing (each prompt's own task's index, as the index arm's records are; a per-task
arm is timed routed by its task router)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from specfair.drafters.index import load_index
from specfair.measure.io import read_json, read_jsonl
from specfair.measure.replay import Policy
from specfair.study.config import StudyConfig
from specfair.study.same_data import (
    ARM,
    EVALS,
    INDEXES,
    SAME_DATA_FILE,
    replay_variant,
)

INDEX_LABEL = "index"  # the index alone in timed/ and timed.json


def index_labels(run_dir: Path, cfg: StudyConfig) -> dict[str, str | None]:
    """``{label: arm drafting with the index (None: the index alone)}`` of the variants to
    time: none unless ``time_index`` and ``index_arm`` are on and ``same_data.json`` exists."""
    path = run_dir / SAME_DATA_FILE
    if not (cfg.time_index and cfg.index_arm and path.is_file()):
        return {}
    arm = (read_json(path).get("fine_tuned") or {}).get("arm")
    timed = arm in cfg.arms_timed  # a drafter the timed stage loads (``timed_arms``)
    return {INDEX_LABEL: None} | ({f"{arm}+index": arm} if arm and timed else {})


def index_bench_options(run, labels: dict[str, str | None]) -> dict[str, dict]:
    """Per label the ``run_bench`` arguments of its proposer: ``proposer`` (DIR named relative
    to the run directory, as the settings record it) and ``index`` (the loaded index)."""
    if not labels:
        return {}
    index = load_index(run.dir / INDEXES / ARM, run.tok)
    where = f"{INDEXES}/{ARM}"
    return {label: {"proposer": f"{'suffix-hybrid' if arm else 'suffix'}:{where}",
                    "index": index} for label, arm in labels.items()}


def index_prediction(run_dir: Path, cfg: StudyConfig, arm: str | None, policy: Policy,
                     costs: dict) -> tuple[dict[str, dict], Callable]:
    """``(passes, predict)`` of a variant: ``passes`` ``{task: {id: True}}``, the prompts it
    can predict; ``predict(task, ids, prefill)`` -> ``(speed-up, speed-up with the prefills or
    None)`` replayed on those prompts (a drafter's prefill costs ``c`` times the target's, the
    index's nothing)."""
    c, v = costs["c"], costs["verify_slope"]
    drafted = {(r["task"], r["id"]): r for r in read_jsonl(run_dir / INDEXES / EVALS)
               if r["index"] == ARM}
    passed = {(r["task"], r["id"]): r for r in read_jsonl(run_dir / "eval.jsonl")
              if arm and r["arm"] == arm and r["budget"] == max(cfg.budgets)
              and r.get("seed", cfg.seeds[0]) == cfg.seeds[0]}
    keys = [k for k in drafted if not arm or k in passed]
    passes: dict[str, dict] = {}
    for t, i in keys:
        passes.setdefault(t, {})[i] = True
    proposer = "suffix-hybrid" if arm else "suffix"

    def predict(task: str, ids: list[str], prefill: list) -> tuple[float, float | None]:
        rs = [replay_variant(proposer, passed.get((task, i)), drafted[(task, i)], c, v, policy)
              for i in ids]
        tok, cost = sum(r.tokens for r in rs), sum(r.cost(c, v) for r in rs)
        if None in prefill:
            return tok / cost, None
        pre = sum(prefill)
        return tok / cost, (tok + pre) / (cost + pre * (1.0 + (c if arm else 0.0)))

    return passes, predict
