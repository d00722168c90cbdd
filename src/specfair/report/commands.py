"""CLI glue for ``specfair report RUN_DIR`` (the CLI owner wires it into ``specfair.cli``)."""

from __future__ import annotations

from pathlib import Path

from specfair.errors import SpecfairError
from specfair.measure.io import read_jsonl
from specfair.report.screenshot import screenshot
from specfair.report.study import write_report

# the run's records the summary is computed from (``specfair experiment`` reads them the same way)
RECORDS = ("eval.jsonl", "policy_eval.jsonl", "routing/eval.jsonl", "methods/eval.jsonl",
           "indexes/eval.jsonl", "timed/*/bench.jsonl", "timed/policies/*/*/bench.jsonl")


def check_records(run_dir: Path) -> None:
    """Refuse a run whose records were damaged since (a corrupt line before the last one) with
    the reader and the error ``specfair experiment`` gives (a torn last line is a notice): the
    report would otherwise present numbers that the records no longer hold."""
    for pattern in RECORDS:
        for path in sorted(run_dir.glob(pattern)):
            read_jsonl(path)


def report_command(run_dir: str | Path, screenshot_png: str | Path | None = None) -> dict:
    """Rebuild ``RUN_DIR/report.md`` and ``RUN_DIR/report.html`` from the stored records alone;
    print both paths; optionally screenshot the HTML. Raises ``SpecfairError`` if ``run_dir``
    is not a directory. Returns ``{"markdown", "html", "screenshot"}``."""
    if not Path(run_dir).is_dir():
        raise SpecfairError(f"{run_dir}: no such run directory")
    check_records(Path(run_dir))
    md, html = write_report(run_dir)
    print(f"wrote {md}")
    print(f"wrote {html}")
    shot = None
    if screenshot_png is not None:
        if screenshot(html, screenshot_png):
            shot = Path(screenshot_png)
            print(f"wrote {shot}")
    return {"markdown": md, "html": html, "screenshot": shot}
