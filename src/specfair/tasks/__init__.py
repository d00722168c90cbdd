"""Task suites: prompts with task labels, ids and references; readers for upstream formats;
suite files; a deterministic train/test split; chat encoding."""

from specfair.tasks.chat import build_messages, encode_prompt
from specfair.tasks.formats import detect_format, read_prompts
from specfair.tasks.prompt import Prompt, normalize_text
from specfair.tasks.readers_hf import read_hf
from specfair.tasks.readers_jsonl import (
    HUMANEVAL_TEMPLATE,
    read_humaneval,
    read_jsonl,
    read_spec_bench,
)
from specfair.tasks.readers_math import read_gsm8k, read_mgsm
from specfair.tasks.split import (
    DEFAULT_TEST_FRACTION,
    check_no_overlap,
    split_key,
    split_of,
)
from specfair.tasks.suite import Suite, describe_suite, sample_per_task
from specfair.tasks.suite_config import suite_from_config
from specfair.tasks.suite_load import load_default_suite, load_suite, packaged_suites

__all__ = [
    "DEFAULT_TEST_FRACTION",
    "HUMANEVAL_TEMPLATE",
    "Prompt",
    "Suite",
    "build_messages",
    "check_no_overlap",
    "describe_suite",
    "detect_format",
    "encode_prompt",
    "load_default_suite",
    "load_suite",
    "normalize_text",
    "packaged_suites",
    "read_gsm8k",
    "read_hf",
    "read_humaneval",
    "read_jsonl",
    "read_mgsm",
    "read_prompts",
    "read_spec_bench",
    "sample_per_task",
    "split_key",
    "split_of",
    "suite_from_config",
]
