"""The experiment's report, rebuilt from a run directory's stored records alone
(``summary.json``, ``timed.json``; see :mod:`specfair.report.study`)::

    RUN_DIR/report.md        # references figures/*.png
    RUN_DIR/figures/*.png    # dose_response.png
    RUN_DIR/report.html      # self-contained: inline CSS, base64 PNGs, no external assets

Modules: ``study`` (records → blocks → both files), ``doc`` (block model + Markdown), ``html``,
``commands`` (``report_command`` for the CLI), ``screenshot`` (``screenshot.screenshot(html,
png)`` renders with headless Chromium).
"""

from specfair.report.commands import report_command
from specfair.report.study import write_report

__all__ = ["report_command", "write_report"]
