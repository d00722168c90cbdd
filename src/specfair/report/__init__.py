"""Experiment report: per-task speed-ups before/after fine-tuning, acceptance (measured and
estimated), disparity, Leviathan's predicted speed-up vs γ, training curves and a templated
plain-language answer — rebuilt from the stored records alone.

Run directory read (every file may be missing; the report says what is missing)::

    RUN_DIR/
      config.json, environment.json          # config used; versions, hardware, model hashes
      baseline/bench.jsonl, bench_summary.json, estimate.jsonl, estimate_summary.json
      variants/<name>/bench.jsonl, bench_summary.json, estimate.jsonl,
                      estimate_summary.json, train_log.jsonl

Record formats: docs/CONTRACTS.md (measure section); ``train_log.jsonl`` as written by
``specfair.distill.trainer`` (step records with ``loss``; re-estimate records with
``"alpha": {task: a}``). A summary missing next to its ``.jsonl`` is recomputed.

Written::

    RUN_DIR/report.md        # references figures/*.png
    RUN_DIR/figures/*.png    # speedup, alpha_tau, alpha_est_vs_measured, alpha_estimated,
                             # gamma_curves, training
    RUN_DIR/report.html      # self-contained: inline CSS, base64 PNGs, no external assets

Modules: ``load`` (run dir → :class:`Run`), ``compare`` (frames, disparity, best variant),
``tables``, ``plots``, ``narrative``, ``doc`` (block model + Markdown), ``html``, ``build``,
``commands`` (``report_command`` for the CLI), ``screenshot`` (module; ``screenshot.screenshot(html,
png)`` renders with headless Chromium).
"""

from specfair.report.build import build_report
from specfair.report.commands import report_command
from specfair.report.load import Arm, Run, load_run

__all__ = ["Arm", "Run", "build_report", "load_run", "report_command"]
