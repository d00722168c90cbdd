"""Measurement: wall-clock AR-vs-SD benchmark, teacher-forced acceptance estimates, metrics,
bootstrap CIs and summaries (plain JSONL/JSON records, see docs/CONTRACTS.md)."""

from specfair.measure.bench import BENCH_FILE, BENCH_SUMMARY_FILE, load_bench_records, run_bench
from specfair.measure.bench_summary import summarize_bench
from specfair.measure.estimate import (
    ESTIMATE_FILE,
    ESTIMATE_SUMMARY_FILE,
    measure_cost_ratio,
    run_estimate,
    teacher_forced_positions,
    teacher_forced_stats,
    time_decode_step,
)
from specfair.measure.estimate_summary import compare_estimate_to_bench, summarize_estimate
from specfair.measure.io import append_jsonl, read_jsonl, write_json
from specfair.measure.responses import RESPONSES_FILE, ensure_responses, read_responses
from specfair.measure.stats import (
    bootstrap_ci,
    bootstrap_mean,
    bootstrap_ratio_of_means,
    bootstrap_ratio_of_ratios,
)
from specfair.measure.tables import print_bench_table, print_estimate_table

__all__ = [
    "BENCH_FILE",
    "BENCH_SUMMARY_FILE",
    "ESTIMATE_FILE",
    "ESTIMATE_SUMMARY_FILE",
    "RESPONSES_FILE",
    "append_jsonl",
    "bootstrap_ci",
    "bootstrap_mean",
    "bootstrap_ratio_of_means",
    "bootstrap_ratio_of_ratios",
    "compare_estimate_to_bench",
    "ensure_responses",
    "load_bench_records",
    "measure_cost_ratio",
    "print_bench_table",
    "print_estimate_table",
    "read_jsonl",
    "read_responses",
    "run_bench",
    "run_estimate",
    "summarize_bench",
    "summarize_estimate",
    "teacher_forced_positions",
    "teacher_forced_stats",
    "time_decode_step",
    "write_json",
]
