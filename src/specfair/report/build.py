"""Assemble the report from a run directory: blocks → ``report.md`` (+ ``figures/*.png``) and a
self-contained ``report.html``."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

from specfair.errors import SpecfairError
from specfair.measure.estimate_summary import compare_estimate_to_bench, summarize_estimate
from specfair.report import compare, plots, tables
from specfair.report.doc import Block, Bullets, Code, Figure, Heading, Para, to_markdown
from specfair.report.html import to_html
from specfair.report.load import Run, load_run
from specfair.report.narrative import narrative

FIGURES = "figures"
FIGURE_NAMES = ("speedup.png", "alpha_tau.png", "alpha_est_vs_measured.png",
                "alpha_estimated.png", "gamma_curves.png", "training.png")


def matched_estimate(arm) -> dict | None:
    """The arm's estimate summary over the benchmarked prompts only (the estimate usually
    covers more prompts than the bench, and per-prompt differences would otherwise blur the
    estimated-vs-measured comparison); ``None`` where there is nothing to restrict."""
    est, bench = arm.estimate, arm.bench
    if est is None or bench is None or est.empty or bench.empty or "id" not in est:
        return None
    keep = est[est["id"].isin(set(bench["id"]))]
    if keep.empty or len(keep) == len(est):
        return None
    meta = arm.estimate_summary.get("meta", {})
    return summarize_estimate(keep.to_dict("records"), c=arm.c, gamma=arm.gamma or 5,
                              seed=meta.get("seed", 0),
                              meta={**meta, "matched_to_bench": True})  # fmt: skip


def comparisons(run: Run) -> dict[str, list[dict]]:
    """``compare_estimate_to_bench`` rows per arm with both summaries, the estimate taken over
    the benchmarked prompts (see :func:`matched_estimate`)."""
    out = {}
    for arm in run.arms:
        if arm.has_bench and arm.has_estimate:
            est = matched_estimate(arm) or arm.estimate_summary
            out[arm.name] = compare_estimate_to_bench(est, arm.bench_summary,
                                                      key=compare.alpha_key(arm))
    return out


class _Builder:
    def __init__(self, run: Run) -> None:
        self.run = run
        self.blocks: list[Block] = []
        self.problems: list[str] = []

    def add(self, *blocks: Block | None) -> None:
        self.blocks += [b for b in blocks if b is not None]

    def safely(self, what: str, fn: Callable, *args):
        try:
            return fn(*args)
        except Exception as e:  # one broken section must not lose the whole report
            self.problems.append(f"{what} failed: {e.__class__.__name__}: {e}")
            return None

    def figure(self, name: str, fn: Callable, caption: str, *args, missing: str = "") -> None:
        png = self.safely(f"figure {name}", fn, self.run, *args)
        if png:
            self.add(Figure(name, png, caption))
        elif missing:
            self.add(Para(missing, kind="note"))


def _setup_blocks(run: Run) -> list[Block]:
    blocks: list[Block] = [Heading("Setup")]
    rows = []
    for arm in run.arms:
        bm = (arm.bench_summary or {}).get("meta", {})
        em = (arm.estimate_summary or {}).get("meta", {})
        rows.append([arm.name, str(bm.get("drafter") or em.get("drafter") or "–"),
                     str(arm.gamma or "–"), tables.fmt(arm.c, 3),
                     str(bm.get("temperature", em.get("temperature", "–"))),
                     str(bm.get("n_prompts", "–")), str(em.get("n_prompts", "–"))])
    blocks.append(tables.Table(
        ["arm", "drafter", "bench γ", "cost ratio c", "temperature", "bench prompts",
         "estimate prompts"], rows, "Arms (from the summaries' meta)",
        ["l", "l", "r", "r", "r", "r", "r"]))
    for title, d in (("Configuration (config.json)", run.config),
                     ("Environment (environment.json)", run.environment)):
        t = tables.kv_table(title, d)
        if t is not None:
            blocks.append(t)
    return blocks


def report_blocks(run: Run) -> tuple[list[Block], list[str]]:
    b = _Builder(run)
    bench = compare.bench_frame(run)
    est = compare.estimate_frame(run)
    b.add(Heading(f"specfair report — {run.run_dir.resolve().name}", 1),
          Para(f"Built from the stored records in `{run.run_dir}` alone. Speed-up = mean SD "
               "tokens/s ÷ mean AR tokens/s per task; 95% percentile-bootstrap CIs (prompts "
               "resampled). *Before* = the baseline drafter, *after* = each fine-tuned "
               "variant.", kind="note"))

    b.add(Heading("Answer"))
    b.add(*(b.safely("narrative", narrative, run) or [Para("The narrative could not be built.",
                                                           kind="note")]))

    b.add(Heading("Data availability"), tables.availability_table(run))
    notes = list(run.notes) + [f"{a.name}: {n}" for a in run.arms for n in a.notes]
    notes += [f"{a.name}: not benchmarked — only the acceptance-based views include it"
              for a in run.variants.values() if not a.has_bench and a.has_estimate]
    if notes:
        b.add(Bullets(notes))

    b.add(Heading("1. Speed-up per task, before and after"))
    b.figure("speedup.png", plots.speedup_bars,
             "Per-task speed-up per arm with 95% CI; dashed line: no speed-up (1×).", bench,
             missing="No benchmark summaries: nothing measured to plot.")
    b.add(b.safely("speed-up table", tables.speedup_table, run, bench))

    b.add(Heading("2. Acceptance: α and τ, estimated vs measured"))
    b.figure("alpha_tau.png", plots.alpha_tau_bars,
             "Measured acceptance α (accepted/drafted) and τ (tokens per target step) per task.",
             bench)
    comp = b.safely("estimate-vs-bench comparison", comparisons, run) or {}
    b.figure("alpha_est_vs_measured.png", plots.estimated_vs_measured,
             "Teacher-forced estimate of α against the α measured per verified draft position, "
             "both over the benchmarked prompts (points on the dashed line agree); bars: 95% "
             "CIs.", comp,
             missing="No arm has both an estimate and a benchmark: no estimated-vs-measured "
                     "comparison.")
    b.figure("alpha_estimated.png", plots.estimated_alpha_bars,
             "Estimated per-task α for every arm with an estimate (including variants that "
             "were not benchmarked).", est)
    b.add(b.safely("acceptance table", tables.alpha_tau_table, run, bench, est))

    b.add(Heading("3. Disparity before and after"))
    t1 = b.safely("speed-up disparity table", tables.speedup_disparity_table, run)
    t2 = b.safely("acceptance disparity table", tables.alpha_disparity_table, run)
    b.add(t1 or Para("No measured speed-ups: no speed-up disparity.", kind="note"), t2)
    b.add(Para("max/min = best ÷ worst task; CV = σ/μ (population σ); Gini = mean absolute "
               "difference ÷ 2μ; CE spread = variance across tasks of the drafter's mean "
               "cross-entropy to the target (Sandler et al., 2025). Lower is fairer for all "
               "four.", kind="note"))

    b.add(Heading("4. Predicted speed-up vs γ"))
    b.figure("gamma_curves.png", plots.gamma_curves,
             "Leviathan et al. (2023): E[tokens/step] = (1−α^(γ+1))/(1−α), speed-up = "
             "E[tokens/step]/(γc+1), from each task's estimated α (band: α's 95% CI) and the "
             "arm's cost ratio c; dots: measured speed-up at the benchmark's γ.", est, bench,
             missing="No estimate summary with a cost ratio c: no predicted curves.")

    b.add(Heading("5. Training"))
    b.figure("training.png", plots.training_curves,
             "Distillation loss per variant and, where re-estimated during training, the "
             "per-task α on held-back examples.",
             missing="No train_log.jsonl in any variant.")
    fin = _final_alpha_rows(run)
    if fin:
        b.add(tables.Table(["variant", "first logged α (mean over tasks)",
                            "last logged α (mean over tasks)", "steps"], fin,
                           "Acceptance α logged by the trainer", ["l", "r", "r", "r"]))

    b.add(*_setup_blocks(run))
    if b.problems:
        b.add(Heading("Problems while building this report"), Code("\n".join(b.problems)))
    return b.blocks, b.problems


def _final_alpha_rows(run: Run) -> list[list[str]]:
    rows = []
    for arm in run.variants.values():
        est = [r for r in arm.train_log if isinstance(r.get("alpha"), dict) and r["alpha"]]
        steps = [r.get("step") for r in arm.train_log if "loss" in r]
        if not est:
            continue

        def mean(d):
            v = [float(x) for x in d.values() if isinstance(x, int | float)
                 and math.isfinite(x)]
            return sum(v) / len(v) if v else float("nan")

        rows.append([arm.name, tables.fmt(mean(est[0]["alpha"]), 3),
                     tables.fmt(mean(est[-1]["alpha"]), 3),
                     str(max(steps) if steps else "–")])
    return rows


def build_report(run_dir: str | Path) -> tuple[Path, Path]:
    """Write ``RUN_DIR/report.md`` (figures under ``RUN_DIR/figures/``) and the self-contained
    ``RUN_DIR/report.html``; return their paths. Never fails on missing or partial records."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise SpecfairError(f"{run_dir}: no such run directory")
    run = load_run(run_dir)
    blocks, _ = report_blocks(run)
    fig_dir = run_dir / FIGURES
    fig_dir.mkdir(exist_ok=True)
    for name in FIGURE_NAMES:  # no stale figure from an earlier build
        (fig_dir / name).unlink(missing_ok=True)
    for blk in blocks:
        if isinstance(blk, Figure):
            (fig_dir / blk.name).write_bytes(blk.png)
    md_path, html_path = run_dir / "report.md", run_dir / "report.html"
    md_path.write_text(to_markdown(blocks, FIGURES), encoding="utf-8")
    title = f"specfair report — {run_dir.resolve().name}"
    html_path.write_text(to_html(blocks, title), encoding="utf-8")
    return md_path, html_path
