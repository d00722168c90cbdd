"""Rich tables of ``bench_summary.json`` and ``estimate_summary.json`` (what ``specfair bench``
and ``specfair estimate`` print): a row per task, the overall row, then the disparity line."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping


def _fmt(ci: Mapping | None, digits: int = 2) -> str:
    if (
        not ci
        or ci.get("mean") is None
        or (isinstance(ci["mean"], float) and math.isnan(ci["mean"]))
    ):
        return "–"
    s = f"{ci['mean']:.{digits}f}"
    lo, hi = ci.get("lo"), ci.get("hi")
    if lo is not None and hi is not None and not (math.isnan(lo) or math.isnan(hi)):
        s += f" [{lo:.{digits}f}, {hi:.{digits}f}]"
    return s


def _num(x, digits: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _table(title: str, columns: tuple[str, ...]):
    """A rich table with ``columns``: the task column left-aligned, the others right."""
    from rich.table import Table

    t = Table(title=title)
    for col in columns:
        t.add_column(col, justify="left" if col == "task" else "right")
    return t


def _print_rows_and_disparity(
    console, t, summary: Mapping, cells: Callable[[Mapping], list[str]], *,
    worst_unit: str = "", extra: str = "",
) -> None:  # fmt: skip
    """Fill ``t`` with a row per task and the overall row (``cells`` of a summary block), print
    it, then the disparity line (``worst_unit`` after the worst value, ``extra`` at the end)."""
    for name, b in summary.get("tasks", {}).items():
        t.add_row(name, *cells(b))
    if summary.get("overall"):
        t.add_section()
        t.add_row("overall", *cells(summary["overall"]), style="bold")
    console.print(t)
    d = summary.get("disparity", {})
    console.print(
        f"worst task: [bold]{d.get('worst_task')}[/] ({_num(d.get('worst_speedup'))}{worst_unit})"
        f"   max/min: {_num(d.get('max_min_ratio'))}   CV: {_num(d.get('cv'), 3)}   "
        f"Gini: {_num(d.get('gini'), 3)}{extra}"
    )


def print_bench_table(summary: Mapping, console=None) -> None:
    """A rich table: per task n, AR/SD tok/s, speed-up [95 % CI], token-weighted speed-up,
    α, τ (and, with n-gram drafts, their share of the drafting steps); the overall row; then
    the disparity line."""
    from rich.console import Console

    console = console or Console()
    m = summary.get("meta", {})
    drafting = f"γ={m.get('gamma')}"
    if m.get("policy") is not None:
        drafting = f"policy {m.get('policy')}, proposer {m.get('proposer')}"
    ngram = any("ngram" in b.get("by_proposer", {}) for b in summary.get("tasks", {}).values())
    t = _table(
        f"AR vs SD  (drafter {m.get('drafter')}, {drafting}, T={m.get('temperature')})",
        ("task", "n", "AR tok/s", "SD tok/s", "speed-up [95% CI]", "tok-w speed-up",
         "α acc/drafted", "τ") + (("n-gram steps",) if ngram else ()),
    )  # fmt: skip

    def cells(b):
        share = b.get("by_proposer", {}).get("ngram", {}).get("share", 0.0 if ngram else None)
        return [str(b["n"]), _num(b["ar_tps"], 1), _num(b["sd_tps"], 1), _fmt(b["speedup"]),
                _fmt(b["speedup_tokw"]), _fmt(b["alpha"]), _fmt(b["tau"])
                ] + ([_num(share)] if ngram else [])  # fmt: skip

    _print_rows_and_disparity(console, t, summary, cells, worst_unit="×")


def print_estimate_table(
    summary: Mapping, console=None, comparison: list[dict] | None = None
) -> None:
    """A rich table: per task n, positions, α, greedy α, CE, KL, predicted τ and speed-up at
    the summary's γ; then the disparity line (incl. ce_spread); optionally the comparison."""
    from rich.console import Console

    console = console or Console()
    m = summary.get("meta", {})
    g = str(m.get("gamma"))
    t = _table(
        f"Teacher-forced estimate  (drafter {m.get('drafter')}, T={m.get('temperature')}"
        f", c={_num(m.get('c'), 3)}, γ={g})",
        ("task", "n", "positions", "α", "greedy α", "CE", "KL", f"τ̂ γ={g}", f"Ŝ γ={g}"),
    )

    def cells(b):
        p = b["predicted"].get(g, {})
        return [str(b["n"]), str(b["n_positions"]), _fmt(b["alpha"], 3),
                _fmt(b["greedy_alpha"], 3), _fmt(b["ce"], 3), _fmt(b["kl"], 3),
                _num(p.get("tau")), _num(p.get("speedup"))]  # fmt: skip

    ce_spread = _num(summary.get("disparity", {}).get("ce_spread"), 4)
    _print_rows_and_disparity(console, t, summary, cells, extra=f"   CE spread: {ce_spread}")
    if comparison:
        _print_comparison(console, comparison)


def _print_comparison(console, comparison: list[dict]) -> None:
    ct = _table(
        "estimated greedy α vs measured (per verified position)",
        ("task", "estimated", "measured [95% CI]", "within CI", "Ŝ", "S measured"),
    )
    for r in comparison:
        ct.add_row(
            r["task"],
            _num(r["estimated_alpha"], 3),
            _fmt({"mean": r["measured_alpha"], "lo": r["lo"], "hi": r["hi"]}, 3),
            {True: "yes", False: "no", None: "–"}[r["within_ci"]],
            _num(r.get("predicted_speedup")),
            _num(r.get("measured_speedup")),
        )
    console.print(ct)
