"""What each trained drafter actually trained on, per task (issue 29 item 4): its distinct
training prompts and their supervised (response) and prompt tokens (one epoch), the sequences
it drew of each task and so the epochs it ran on each, beside the training tokens it saw in
all (``eval.jsonl``).

One epoch's counts are stored: ``train_data.json`` (the arms' training sequences), a data-dose
record's ``dose_*`` fields, a ``monolingual`` record's ``trained_*`` fields. The draws per task
are not: a step's log line (``train_log.jsonl``) holds the set of tasks its batch drew, not how
many of each. They are replayed here with the sampler that drew them
(:class:`specfair.distill.weighting.TaskSampler`, seeded with the training seed, the pool's
task counts, ``batch_size`` per step; ``disparity``'s weights as each step logged them), and
the replay is kept only where every step's tasks equal the logged ones (else ``None``, with
why). A ``per-task`` copy draws only its own task.
"""

from __future__ import annotations

from pathlib import Path

from specfair.distill.weighting import TaskSampler
from specfair.measure.io import read_json, read_jsonl
from specfair.study.config import StudyConfig
from specfair.study.dose import point_name

MONOLINGUAL_KEYS = ("trained_sequences", "trained_supervised_tokens", "trained_prompt_tokens")
DOSE_KEYS = ("dose_prompts", "dose_supervised_tokens", "dose_prompt_tokens")


class _Replay(TaskSampler):
    """A :class:`TaskSampler` whose weights, where set, are the ones a step logged."""

    logged: dict[str, float] | None = None

    def weights(self) -> dict[str, float]:
        return self.logged if self.logged is not None else super().weights()


def _log_until(path: Path, tokens: int) -> tuple[list[dict] | None, str | None]:
    """The log's steps up to the one that reached ``tokens`` (the record's tokens seen)."""
    if not path.is_file():
        return None, f"no {path.name}"
    steps = [r for r in read_jsonl(path) if r["tokens"] <= tokens]
    if not steps or steps[-1]["tokens"] != tokens or [r["step"] for r in steps] != list(
            range(1, len(steps) + 1)):
        return None, f"{path.name} does not run whole up to the record's {tokens:,} tokens"
    return steps, None


def replay_draws(steps: list[dict], pool: dict[str, int], rule: str, seed: int,
                 batch_size: int) -> tuple[dict[str, int] | None, str | None]:
    """Sequences drawn per task over ``steps`` (a train log's lines) from a pool of
    ``pool[task]`` sequences (in the pool's task order), or None and why where a step's tasks
    differ from the logged ones."""
    labels = [t for t, n in pool.items() for _ in range(n)]
    if not labels:
        return None, "no training sequences"
    sampler = _Replay(labels, "disparity" if rule == "disparity" else "uniform", seed=seed)
    out = dict.fromkeys(pool, 0)
    for r in steps:
        if rule == "disparity":
            if "weights" not in r:
                return None, "the log holds no sampler weights"
            sampler.logged = r["weights"]
        drawn = [labels[i] for i in sampler.sample(batch_size)]
        if "tasks" not in r or sorted(set(drawn)) != list(r["tasks"]):
            return None, f"step {r['step']}'s tasks differ from the replay's"
        for t in drawn:
            out[t] += 1
    return out, None


def _one_epoch(rec_of: dict[str, dict], keys: tuple[str, str, str] | None,
               train_data: dict | None) -> dict[str, dict] | None:
    """Per task ``{"prompts", "supervised_tokens", "prompt_tokens"}`` of one epoch: from each
    task's record ``keys`` where they are there, else ``train_data.json``."""
    names = ("prompts", "supervised_tokens", "prompt_tokens")
    if keys and all(rec_of[t].get(keys[0]) is not None for t in rec_of):
        return {t: {n: r.get(k) for n, k in zip(names, keys, strict=True)}
                for t, r in rec_of.items()}
    return {t: dict(train_data[t]) for t in rec_of} if train_data else None


def _row(run_dir: Path, cfg: StudyConfig, name: str, kind: str, budget: float, recs: list[dict],
         one: dict[str, dict] | None, log_dir: Path) -> dict:
    """One trained drafter: its tokens seen, epochs over all tasks, and per task one epoch's
    counts, the sequences drawn (replayed) and the epochs run."""
    r0, seed = recs[0], recs[0].get("seed", cfg.seeds[0])
    row = {"arm": name, "budget": budget, "seed": seed, "tokens": r0["tokens"],
           "supervised_tokens": r0.get("supervised_tokens"),
           "prompt_tokens": r0.get("prompt_tokens"), "epochs": None, "draws_from": None,
           "tasks": {}}
    if one is None:
        row["draws_from"] = "no one-epoch counts (train_data.json) in this run"
        return row
    counted = all(v[k] is not None for v in one.values() for k in v)  # older runs: not all
    per_epoch = sum(v["supervised_tokens"] + v["prompt_tokens"] for v in one.values()) \
        if counted else 0
    row["epochs"] = r0["tokens"] / per_epoch if per_epoch else None
    draws, why = None, None
    if kind == "per-task":  # one copy per task, each drawing only its own task
        draws = {}
        for t in one:
            steps, why = _log_until(log_dir / t / "train_log.jsonl",
                                    _copy_tokens(log_dir / t, budget))
            if steps is None:
                draws = None
                break
            draws[t] = len(steps) * cfg.batch_size
    elif any(v["prompts"] is None for v in one.values()):
        why = "no prompt counts in this run's records"
    else:
        steps, why = _log_until(log_dir / "train_log.jsonl", r0["tokens"])
        if steps is not None:
            draws, why = replay_draws(steps, {t: v["prompts"] for t, v in one.items()}, kind,
                                      seed, cfg.batch_size)
    row["draws_from"] = why or "replayed, every step's tasks as logged"
    for t, v in one.items():
        d = None if draws is None else draws[t]
        row["tasks"][t] = v | {"draws": d,
                               "epochs": d / v["prompts"] if d is not None and v["prompts"]
                               else None}
    return row


def _copy_tokens(copy_dir: Path, budget: float) -> int:
    """A per-task copy's tokens seen at ``budget`` (its own ``eval.jsonl``; the arm's records
    hold the sum over the copies), -1 where it has none."""
    own = [r for r in read_jsonl(copy_dir / "eval.jsonl") if r["budget"] == budget]
    return own[0]["tokens"] if own else -1


def training_runs(run_dir: Path, records: list[dict], cfg: StudyConfig) -> list[dict]:
    """Per arm at its largest budget and per data-dose point (first seed): ``{"arm", "budget",
    "seed", "tokens", "supervised_tokens", "prompt_tokens" (seen, all tasks), "epochs" (tokens
    seen ÷ one epoch's tokens), "draws_from" (how the draws were had, or why not), "tasks":
    {task: {"prompts", "supervised_tokens", "prompt_tokens" (one epoch), "draws", "epochs"}}}``
    (:func:`replay_draws`)."""
    td_path = run_dir / "train_data.json"
    train_data = read_json(td_path) if td_path.is_file() else None
    seed, out = cfg.seeds[0], []

    def first_seed(arm: str, budget: float) -> list[dict]:
        return [r for r in records if r["arm"] == arm and r["budget"] == budget
                and r.get("seed", seed) == seed]

    for arm in cfg.arms:
        budget = next((b for b in sorted(cfg.budgets, reverse=True) if first_seed(arm, b)), None)
        if budget is None:
            continue
        recs = first_seed(arm, budget)
        rec_of = {t: next(r for r in recs if r["task"] == t) for t in cfg.tasks}
        one = _one_epoch(rec_of, MONOLINGUAL_KEYS if arm == "monolingual" else None,
                         train_data)
        out.append(_row(run_dir, cfg, arm, arm, budget, recs, one, run_dir / "arms" / arm))
    for point in cfg.dose_points:
        name = point_name(cfg, point)
        recs = first_seed(name, 1.0)
        if not recs:
            continue
        rec_of = {t: next(r for r in recs if r["task"] == t) for t in cfg.tasks}
        one = _one_epoch(rec_of, DOSE_KEYS, None)
        own = run_dir / "arms" / "dose" / name
        # the largest dose in supervised tokens is the dose arm's own training: its log
        log_dir = own if own.is_dir() else run_dir / "arms" / cfg.dose_arm
        out.append(_row(run_dir, cfg, name, cfg.dose_arm, 1.0, recs, one, log_dir)
                   | {"dose_point": point})
    return out
