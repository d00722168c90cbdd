"""``specfair experiment``: from nothing to a report, in cached stages.

Stages, in order (each writes its outputs under the run directory and a marker
``stages/<stage>.json`` when it is complete; a completed stage is skipped on the next run, so a
killed run resumes where it stopped; ``--force STAGE`` redoes one stage and everything that
depends on it):

1. ``models``            fetch / convert the known models (no-op when cached), a greedy smoke
                          answer from the target
2. ``baseline-bench``    AR vs SD on the test prompts with the original drafter
3. ``baseline-estimate`` teacher-forced α, CE, KL per task on the test prompts (greedy target
                          answers reused from the bench where they exist)
4. ``data``               target responses for the TRAIN split (cached, resumable)
5. ``train-<variant>``    fine-tune the drafter (checkpoints; resumes mid-training)
6. ``eval-<variant>``     estimate (and, for ``report.bench_variants``, benchmark SD) with the
                          fine-tuned drafter on the same test prompts; AR records are reused
                          from the baseline bench (the target and prompts are the same)
7. ``report``             report.md + report.html

Inside a stage, the bench and estimate JSONL files and the training checkpoints resume too.
"""


from specfair.experiment.config import ExperimentConfig, stage_names
from specfair.experiment.driver import run_experiment

__all__ = ["ExperimentConfig", "run_experiment", "stage_names"]
