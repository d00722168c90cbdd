"""CLI glue for ``specfair report RUN_DIR`` (the CLI owner wires it into ``specfair.cli``)."""

from __future__ import annotations

from pathlib import Path

from specfair.report.build import build_report
from specfair.report.screenshot import screenshot


def report_command(run_dir: str | Path, screenshot_png: str | Path | None = None) -> dict:
    """Rebuild ``RUN_DIR/report.md`` and ``RUN_DIR/report.html`` from the stored records alone;
    print both paths; optionally screenshot the HTML. Raises ``SpecfairError`` if ``run_dir``
    is not a directory. Returns ``{"markdown", "html", "screenshot"}``."""
    md, html = build_report(run_dir)
    print(f"wrote {md}")
    print(f"wrote {html}")
    shot = None
    if screenshot_png is not None:
        if screenshot(html, screenshot_png):
            shot = Path(screenshot_png)
            print(f"wrote {shot}")
    return {"markdown": md, "html": html, "screenshot": shot}
