"""CLI glue for ``specfair report RUN_DIR`` (the CLI owner wires it into ``specfair.cli``)."""

from __future__ import annotations

from pathlib import Path

from specfair.errors import SpecfairError
from specfair.report.screenshot import screenshot
from specfair.report.study import write_report


def report_command(run_dir: str | Path, screenshot_png: str | Path | None = None) -> dict:
    """Rebuild ``RUN_DIR/report.md`` and ``RUN_DIR/report.html`` from the stored records alone;
    print both paths; optionally screenshot the HTML. Raises ``SpecfairError`` if ``run_dir``
    is not a directory. Returns ``{"markdown", "html", "screenshot"}``."""
    if not Path(run_dir).is_dir():
        raise SpecfairError(f"{run_dir}: no such run directory")
    md, html = write_report(run_dir)
    print(f"wrote {md}")
    print(f"wrote {html}")
    shot = None
    if screenshot_png is not None:
        if screenshot(html, screenshot_png):
            shot = Path(screenshot_png)
            print(f"wrote {shot}")
    return {"markdown": md, "html": html, "screenshot": shot}
