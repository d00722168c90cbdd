"""``specfair experiment CONFIG --check``: validate a config against everything that can be
known before any model is loaded, and say what it would run.

Checked: every key and value (:class:`~specfair.study.config.StudyConfig`), the task names
(the study suite), the models' configs (layers, vocabulary, context: no weights read), the
data (each task's test prompts at least its ``n_test``: the prompts are picked exactly as the
run picks them, leak check included). Nothing is written.
"""

from __future__ import annotations

from specfair.study.config import StudyConfig, timed_variants
from specfair.study.data import study_prompts
from specfair.study.dose import dose_name
from specfair.tasks.study import STUDY_TASKS, load_study_suite


def check_config(cfg: StudyConfig) -> list[str]:
    """Validate ``cfg`` (a :class:`~specfair.errors.SpecfairError` on the first problem) and
    return the plan, one line per item."""
    cfg.check_tasks([t.name for t in STUDY_TASKS])
    cfg.check_models()
    prompts = study_prompts(cfg, load_study_suite(seed=cfg.seed, tasks=cfg.tasks))
    n = lambda ps, t: sum(p.task == t for p in ps)  # noqa: E731
    out = [f"config {cfg.origin}: valid; target {cfg.target}, drafter {cfg.drafter}",
           f"prompts per task (train / held-out / test / timed), {len(prompts.dropped)} "
           "train-split prompt(s) dropped by the leak check:"]
    for t in cfg.tasks:
        out.append(f"  {t}: {n(prompts.train, t)} / {n(prompts.heldout, t)} / "
                   f"{n(prompts.test, t)} / {min(cfg.per_task('n_bench', t), n(prompts.test, t))}"
                   + (" (dose task)" if cfg.dose_points and cfg.doses_task(t) else ""))
    out.append(f"arms {', '.join(cfg.arms)} at budgets {', '.join(map(str, cfg.budgets))}, "
               f"{cfg.epochs:g} epochs, seeds {', '.join(map(str, cfg.seeds))}"
               + (f" ({', '.join(cfg.arms_seeded)}; the others seed {cfg.seeds[0]})"
                  if cfg.seeds[1:] and cfg.arms_seeded != cfg.arms else "") + "; answers "
               f"{cfg.test_response_tokens} tokens (test), {cfg.train_response_tokens} "
               "(training text)")
    out.append(f"timed: the base drafter and {', '.join(cfg.arms_timed)} (largest budget, "
               "first seed) "
               f"at {cfg.test_response_tokens} new tokens under "
               + ", ".join(v[0] for v in timed_variants(cfg.timed_policies, cfg.gamma))
               + ("; HF assisted generation (its defaults, the base drafter)" if cfg.timed_hf
                  else "") + ", against the same plain-decoding runs")
    if cfg.dose_points:
        unit = "supervised tokens per dose task" if cfg.dose_tokens else "of the prompts"
        out.append(f"data dose of {cfg.dose_arm}: "
                   + ", ".join(dose_name(cfg.dose_arm, p, bool(cfg.dose_tokens))
                               for p in cfg.dose_points)
                   + f" ({unit}; the supervised tokens each task reaches are known once its "
                     "training text is)")
    return out
