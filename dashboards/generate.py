"""Turn the dashboard modules into the JSON files Grafana provisions: ``generated/<uid>.json``.

The committed files are the artifact (provisioning, ``journeys dashboards push``, the
HTML report and the SQL tests all read them); a test checks they equal what the code
generates, so edit the Python modules and run ``journeys dashboards generate``.

>>> [d["uid"] for d in build_all()]
['journeys-operations', 'journeys-access', 'journeys-telehealth', 'journeys-loyalty']
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

GENERATED_DIR = Path(__file__).with_name("generated")

# Module of each dashboard, in the order they are listed (and pushed).
DASHBOARD_MODULES: tuple[str, ...] = (
    "dashboards.operations",
    "dashboards.access",
    "dashboards.telehealth",
    "dashboards.loyalty",
)

Dashboard = dict[str, Any]


def _builders() -> list[Callable[[], Any]]:
    # Imported here: the SDK is only needed to generate, not to read the JSON.
    import importlib

    return [importlib.import_module(name).build for name in DASHBOARD_MODULES]


def render(builder: Any) -> Dashboard:
    """An SDK dashboard builder as plain JSON data, with stable panel ids."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder

    data: Dashboard = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    # The SDK leaves ids to Grafana; fixed ids keep links (?viewPanel=) and diffs stable.
    for number, panel in enumerate(data.get("panels", []), start=1):
        panel["id"] = number
    return data


def build_all() -> list[Dashboard]:
    """Every dashboard, freshly built from the code."""
    return [render(build()) for build in _builders()]


def to_json(dashboard: Dashboard) -> str:
    """The file content: sorted keys, two-space indent, trailing newline (diff friendly)."""
    return json.dumps(dashboard, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def generate(out_dir: Path = GENERATED_DIR) -> list[Path]:
    """Write ``<uid>.json`` for every dashboard; remove stale ones. Returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for dashboard in build_all():
        path = out_dir / f"{dashboard['uid']}.json"
        path.write_text(to_json(dashboard), encoding="utf-8")
        written.append(path)
    for stale in set(out_dir.glob("*.json")) - set(written):
        stale.unlink()
    return written


def load_generated(directory: Path = GENERATED_DIR) -> list[Dashboard]:
    """The committed dashboards, in :data:`DASHBOARD_MODULES` order (no SDK needed)."""
    dashboards = [json.loads(path.read_text(encoding="utf-8")) for path in sorted(directory.glob("*.json"))]
    if not dashboards:
        # e.g. a wheel built without the package data: pushing nothing would look like success.
        raise FileNotFoundError(f"no dashboard JSON in {directory}: run `journeys dashboards generate`")
    order = {f"journeys-{name.rsplit('.', 1)[1]}": i for i, name in enumerate(DASHBOARD_MODULES)}
    return sorted(dashboards, key=lambda d: (order.get(d["uid"], len(order)), d["uid"]))


def iter_panels(dashboard: Dashboard) -> Iterator[Dashboard]:
    """Every panel with a query (rows skipped, collapsed rows' panels included)."""
    for panel in dashboard.get("panels", []):
        if panel.get("type") == "row":
            yield from (p for p in panel.get("panels", []) if p.get("targets"))
        elif panel.get("targets"):
            yield panel
