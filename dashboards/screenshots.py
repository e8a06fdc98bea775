"""PNG pictures of the report, one per dashboard, with headless Chromium (for the README).

Each dashboard is rendered alone (``render_report(..., only=[uid], dashboard_ranges=True)``,
so each shows its own default range, "now" being the end of the data) and
photographed with ``chromium --headless --screenshot`` in a window as wide as a laptop's
(:data:`~dashboards.report.REFERENCE_WIDTH`, 1,280 px). The report is made "at" the end
of the data, so the same data gives the same pictures. Chromium is a Debian package
(``apt-get install chromium``); nothing else is needed and nothing is fetched.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from dashboards.generate import load_generated
from dashboards.report import GAP, REFERENCE_WIDTH, ROW_UNIT, render_report

SCREENSHOT_DIR = Path(__file__).with_name("screenshots")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--hide-scrollbars",
    "--force-device-scale-factor=1",
)


def page_height(dashboard: dict[str, Any]) -> int:
    """The rendered height of one dashboard's page at the reference width, from its grid (px)."""
    rows = max((p["gridPos"]["y"] + p["gridPos"]["h"] for p in dashboard.get("panels", [])), default=0)
    return 330 + rows * (ROW_UNIT + GAP)


def find_chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    raise FileNotFoundError("no Chromium: apt-get install chromium")


def capture(
    client: Any,
    database: str,
    time_from: datetime,
    time_to: datetime,
    out_dir: Path = SCREENSHOT_DIR,
    uids: Sequence[str] | None = None,
    time_zones: Mapping[str, str] | None = None,
) -> list[Path]:
    """One ``<uid>.png`` per dashboard in ``out_dir`` (site times in ``time_zones``);
    returns the files written."""
    chromium = find_chromium()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    with tempfile.TemporaryDirectory() as scratch:
        for dashboard in load_generated():
            uid = dashboard["uid"]
            if uids is not None and uid not in uids:
                continue
            html = render_report(client, database, Path(scratch) / f"{uid}.html", time_from, time_to,
                                 only=[uid], dashboard_ranges=True, time_zones=time_zones, now=time_to)
            png = out_dir / f"{uid}.png"
            subprocess.run(
                [chromium, *CHROMIUM_FLAGS, f"--window-size={REFERENCE_WIDTH},{page_height(dashboard)}",
                 f"--screenshot={png}", html.as_uri()],
                check=True, capture_output=True, timeout=120,
            )
            written.append(png)
    return written
