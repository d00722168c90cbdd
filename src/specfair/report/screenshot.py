"""Screenshot a report with headless Chromium (for a visual check; optional)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html_path: str | Path, png_path: str | Path, width: int = 1200,
               height: int = 3000, timeout_s: float = 120.0) -> bool:
    """Render ``html_path`` to ``png_path``; False (with a message on stderr) when no Chromium
    is installed (``apt-get install -y chromium``) or it fails."""
    browser = find_browser()
    if browser is None:
        print("screenshot: chromium not found (apt-get install -y chromium)", file=sys.stderr)
        return False
    html_path, png_path = Path(html_path).resolve(), Path(png_path).resolve()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu",
               "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
               "--hide-scrollbars", f"--screenshot={png_path}",
               f"--window-size={width},{height}", html_path.as_uri()]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except (OSError, subprocess.TimeoutExpired) as e:
            print(f"screenshot: {browser} failed: {e}", file=sys.stderr)
            return False
    if proc.returncode != 0 or not png_path.exists():
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        print(f"screenshot: {browser} exited {proc.returncode}: {' '.join(tail)}",
              file=sys.stderr)
        return False
    return True
