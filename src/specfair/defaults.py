"""Project-wide defaults, in one place (no heavy imports: the CLI reads them at start-up).

The typed settings tables (their keys, types and per-table defaults) live with their owners:
:class:`specfair.distill.config.DistillConfig` and :class:`specfair.study.config.StudyConfig`,
checked by :mod:`specfair.schema`; they take the values below where they need them.
"""

DEFAULT_TARGET = "qwen2.5-coder-1.5b-instruct"
DEFAULT_DRAFTER = "qwen2.5-coder-0.5b-instruct"
DEFAULT_GAMMA = 5  # drafts per speculative step
