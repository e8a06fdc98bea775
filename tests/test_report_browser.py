"""The HTML report read in a real browser (headless Chromium) at a laptop's 1,280 px.

A hundred simulated days of three clinics in three time zones go through the offline
pipeline into ClickHouse (chdb); the report is rendered from them, then opened in
Chromium with a measuring script added to a copy of the page (the report itself has
none). The script writes what the browser laid out into the DOM, which
``--dump-dom`` returns: the page's width against the window's, and for every panel
whether it drew something (a bar, a line, a number, a table row) or says why not
("No data", "Not live"), and whether anything in it is cut off.

Last, the screenshots the README shows (``dashboards/screenshots/*.png``) are made
again from the same data, each dashboard at its own default range with "now" at the
end of the data: the same data gives the same pictures.

Skipped only when no Chromium is installed (``apt-get install chromium``; ``.ci/run``
installs it).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from cli.commands.demo import demo_config
from dashboards.generate import iter_panels, load_generated
from dashboards.query import data_time_range
from dashboards.report import REFERENCE_WIDTH, render_report
from dashboards.screenshots import CHROMIUM_FLAGS, SCREENSHOT_DIR, capture, find_chromium
from runtime.config import Settings
from simulator import simulate
from simulator.world import build_world
from sinks.migrate import migrate
from sinks.rows import RowWriter
from streams.assemble import offline_pipeline
from tests.rows import clickhouse_backend, unique_database
from tests.test_dashboards_clickhouse import open_clickhouse

pytestmark = pytest.mark.skipif(
    not any(shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome")),
    reason="no Chromium to render the report in (apt-get install chromium)",
)

# What `journeys demo` simulates (the README's pictures are of it): 120 days at two clinics,
# so the loyalty dashboard has decided returns; the world stops on the last morning
# (09:50 in New York, 08:50 in Chicago): today's clinics are open.
DAYS = demo_config()
PRINT_WIDTH = 1047  # px: the width of an A4 landscape page with 8 mm margins, as the report's @page sets

# Added to a copy of the report (the report has no JavaScript): what the browser laid out.
MEASURE = """<script>
addEventListener("load", () => {
  const cut = (element) => element.scrollWidth > element.clientWidth + 1;
  const panels = [...document.querySelectorAll(".panel")].map((panel) => {
    const body = panel.querySelector(".body");
    const marks = [...panel.querySelectorAll("svg .mark")].filter((mark) => {
      const box = mark.getBBox();
      return box.width > 0 && box.height > 0;
    });
    const outside = [...panel.querySelectorAll("svg")].filter((svg) => {
      const box = svg.getBBox(), view = svg.viewBox.baseVal;
      return box.x < -1 || box.y < -1 || box.x + box.width > view.width + 1 || box.y + box.height > view.height + 1;
    });
    return {
      title: panel.dataset.title,
      marks: marks.length,
      numbers: [...panel.querySelectorAll(".stat .value")].map((value) => value.textContent),
      rows: panel.querySelectorAll("tbody tr").length,
      said: panel.querySelector(".empty")?.textContent ?? null,
      error: panel.querySelector(".error")?.textContent ?? null,
      cut: [...panel.querySelectorAll("h3, .stat, .stat .label")].filter(cut).map((e) => e.textContent),
      overflowing: cut(body) || body.scrollHeight > body.clientHeight + 1,
      chartOutside: outside.length,
    };
  });
  const out = document.createElement("pre");
  out.id = "measured";
  out.textContent = JSON.stringify({
    window: window.innerWidth, page: document.documentElement.scrollWidth, panels,
  });
  document.body.appendChild(out);
});
</script>"""


def measure(report: Path, width: int, scratch: Path) -> dict[str, Any]:
    """Open ``report`` in headless Chromium ``width`` px wide; what :data:`MEASURE` found."""
    page = scratch / f"measured-{width}-{report.name}"
    page.write_text(report.read_text(encoding="utf-8").replace("</body>", MEASURE + "</body>"), encoding="utf-8")
    dom = subprocess.run(
        [find_chromium(), *CHROMIUM_FLAGS, f"--window-size={width},900", "--virtual-time-budget=10000",
         "--dump-dom", page.as_uri()],
        check=True, capture_output=True, text=True, timeout=180,
    ).stdout
    found = re.search(r'<pre id="measured">(.*?)</pre>', dom, re.S)
    assert found, f"the measuring script did not run: {dom[:500]}"
    measured: dict[str, Any] = json.loads(found.group(1).replace("&lt;", "<").replace("&gt;", ">")
                                          .replace("&quot;", '"').replace("&amp;", "&"))
    return measured


def problems(measured: dict[str, Any]) -> list[str]:
    """What a reader of the page would find wrong: a page wider than the window, a panel
    with nothing drawn and nothing said, or content cut off."""
    found = []
    if measured["page"] > measured["window"]:
        found.append(f"the page is {measured['page']} px wide in a {measured['window']} px window")
    for panel in measured["panels"]:
        title = panel["title"]
        if panel["error"]:
            found.append(f"{title}: error {panel['error']}")
        elif not (panel["marks"] or panel["numbers"] or panel["rows"] or panel["said"]):
            found.append(f"{title}: drew nothing and says nothing")
        if panel["cut"]:
            found.append(f"{title}: cut off: {panel['cut']}")
        if panel["overflowing"]:
            found.append(f"{title}: its content overflows the panel")
        if panel["chartOutside"]:
            found.append(f"{title}: the chart draws outside its box")
    return found


@dataclass(frozen=True)
class Loaded:
    client: Client
    database: str
    time_zones: dict[str, str]


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loaded]:
    client = open_clickhouse(tmp_path_factory.mktemp("chdb") / "clickhouse")
    # The pictures name the database: a fixed name keeps them the same from run to run
    # (a shared server gets a name of its own).
    database = "journeys_report" if clickhouse_backend() == "chdb" else unique_database("report")
    client.command(f"DROP DATABASE IF EXISTS {database}")
    migrate(client, database)
    result = offline_pipeline(Settings.model_construct()).run(simulate(DAYS).lines)
    writer = RowWriter(client, database)
    writer.write(result.bundles)
    assert not writer.rejected, writer.rejected
    # The simulator's sites keep their clinic hours in their own zones: so does the report.
    zones = {site.site_id: site.tz.key for site in build_world(DAYS).sites}
    try:
        yield Loaded(client, database, zones)
    finally:
        client.command(f"DROP DATABASE IF EXISTS {database}")
        client.close()


def test_report_reads_at_1280_px_and_on_a_printed_page(loaded: Loaded, tmp_path: Path) -> None:
    start, end = data_time_range(loaded.client, loaded.database)
    whole = render_report(loaded.client, loaded.database, tmp_path / "report.html", start, end,
                          time_zones=loaded.time_zones, now=end)
    own = render_report(loaded.client, loaded.database, tmp_path / "own-ranges.html", start, end,
                        time_zones=loaded.time_zones, dashboard_ranges=True, now=end)
    titles = sorted(p["title"] for d in load_generated() for p in iter_panels(d))
    for report in (whole, own):
        for width in (REFERENCE_WIDTH, PRINT_WIDTH):
            measured = measure(report, width, tmp_path)
            assert measured["window"] == width
            assert sorted(p["title"] for p in measured["panels"]) == titles
            assert problems(measured) == [], f"{report.name} at {width} px"
    html = whole.read_text(encoding="utf-8")
    assert "America/New_York" in html and "America/Chicago" in html
    assert "auto-refresh" not in html


def test_now_panels_say_not_live_on_a_past_range(loaded: Loaded, tmp_path: Path) -> None:
    start, end = data_time_range(loaded.client, loaded.database)
    report = render_report(loaded.client, loaded.database, tmp_path / "past.html", start, end,
                           time_zones=loaded.time_zones, now=end + dt.timedelta(days=1))
    measured = {p["title"]: p for p in measure(report, REFERENCE_WIDTH, tmp_path)["panels"]}
    for title in ("Waiting now", "Providers late now"):
        assert (measured[title]["said"] or "").startswith("Not live"), measured[title]
        assert not measured[title]["numbers"]
    assert measured["Arrivals"]["numbers"]


def test_screenshots_for_the_readme(loaded: Loaded) -> None:
    start, end = data_time_range(loaded.client, loaded.database)
    written = capture(loaded.client, loaded.database, start, end, SCREENSHOT_DIR, time_zones=loaded.time_zones)
    assert sorted(p.name for p in written) == sorted(f"{d['uid']}.png" for d in load_generated())
    for png in written:
        data = png.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        assert int.from_bytes(data[16:20], "big") == REFERENCE_WIDTH  # the IHDR width
