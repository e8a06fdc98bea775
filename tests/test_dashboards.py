"""Dashboards as code: the committed JSON is what the code generates, every panel is
described and queries ClickHouse the way the plugin expects, no panel selects a patient
identifier, the provisioning files are what Grafana and the Helm chart need."""

from __future__ import annotations

import doctest
import importlib
import re
from typing import Any

import pytest
import yaml

from cli.main import build_parser
from dashboards.generate import (
    DASHBOARD_MODULES,
    GENERATED_DIR,
    build_all,
    iter_panels,
    load_generated,
    to_json,
)
from dashboards.push import provisioned_datasources

DASHBOARDS = load_generated()
PANELS = [(d["uid"], p) for d in DASHBOARDS for p in iter_panels(d)]
PANEL_IDS = [f"{uid}:{p['title']}" for uid, p in PANELS]


def test_committed_json_is_what_the_code_generates() -> None:
    fresh = {d["uid"]: to_json(d) for d in build_all()}
    committed = {path.stem: path.read_text(encoding="utf-8") for path in GENERATED_DIR.glob("*.json")}
    assert committed.keys() == fresh.keys(), "run: journeys dashboards generate"
    for uid, text in fresh.items():
        assert committed[uid] == text, f"dashboards/generated/{uid}.json is stale: run `journeys dashboards generate`"


def test_four_dashboards_with_time_ranges_and_refresh() -> None:
    assert {d["uid"]: (d["time"]["from"], d["refresh"]) for d in DASHBOARDS} == {
        "journeys-operations": ("now/d", "10s"),
        "journeys-access": ("now-30d", "1m"),
        "journeys-telehealth": ("now-7d", "1m"),
        "journeys-loyalty": ("now-180d", "5m"),
    }
    for dashboard in DASHBOARDS:
        assert dashboard["time"]["to"] == "now"
        assert dashboard["title"] and dashboard["description"]
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), "panel ids must be unique"


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=[d["uid"] for d in DASHBOARDS])
def test_site_department_provider_variables(dashboard: dict[str, Any]) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "grafana-clickhouse-datasource"
    assert variables["datasource"]["current"]["value"] == "journeys-clickhouse"
    for name in ("site", "department", "provider"):
        variable = variables[name]
        assert variable["type"] == "query"
        assert variable["multi"] is True and variable["includeAll"] is True
        assert "allValue" not in variable  # "All" must stay $__all for $__conditionalAll
        assert variable["current"]["value"] == ["$__all"]
        assert variable["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
        assert variable["query"].lstrip().upper().startswith("SELECT DISTINCT")
    # Chained: departments within the sites, providers within both.
    assert "$site" in variables["department"]["query"]
    assert "$site" in variables["provider"]["query"] and "$department" in variables["provider"]["query"]


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=PANEL_IDS)
def test_panel_is_described_and_queries_clickhouse(uid: str, panel: dict[str, Any]) -> None:
    assert len(panel.get("description", "")) >= 40, "say what the panel measures, in the SPEC's terms"
    assert panel["datasource"] == {"type": "grafana-clickhouse-datasource", "uid": "${datasource}"}
    (target,) = panel["targets"]
    assert target["editorType"] == "sql"
    assert target["datasource"] == panel["datasource"]
    expected = (0, "timeseries") if panel["type"] == "timeseries" else (1, "table")
    assert (target["format"], target["queryType"]) == expected
    sql = target["rawSql"]
    assert "FINAL" in sql, "ReplacingMergeTree tables are read with FINAL"
    assert "$__conditionalAll(site_id IN (${site:singlequote}), $site)" in sql, "the site filter applies"
    for name in ("fromTime", "toTime", "fromTime_ms", "toTime_ms", "interval_s"):
        assert not re.search(rf"\$__{name}\b(?!\))", sql), f"write ($__{name}): see dashboards.macros"


def _top_level_select_list(sql: str) -> str:
    """The outermost SELECT's column list, with everything in parentheses removed."""
    depth, kept = 0, []
    for char in sql:
        depth += char == "("
        if depth == 0:
            kept.append(char)
        depth -= char == ")"
    flat = "".join(kept)
    match = re.search(r"\bSELECT\b(.*?)\bFROM\b", flat, flags=re.S | re.I)
    return match.group(1) if match else flat


@pytest.mark.parametrize(("uid", "panel"), PANELS, ids=PANEL_IDS)
def test_no_panel_selects_a_patient_identifier(uid: str, panel: dict[str, Any]) -> None:
    sql = panel["targets"][0]["rawSql"]
    assert "patient_id" not in sql
    columns = _top_level_select_list(sql)
    for identifier in ("patient_key", "appointment_id", "event_id"):
        assert identifier not in columns, f"{uid} / {panel['title']} selects {identifier}"
    # A subquery in FROM may carry patient_key, but only to aggregate it away (per patient,
    # or over each patient's visits in a window).
    for subquery in re.findall(r"FROM\s*\(\s*SELECT(.*?)\bFROM\b", sql, flags=re.S | re.I):
        if "patient_key" in subquery:
            assert re.search(r"(GROUP|PARTITION) BY[^)]*patient_key", sql), f"{uid} / {panel['title']} passes patient_key on"


def test_identifier_check_catches_a_leak() -> None:
    assert "patient_key" in _top_level_select_list("SELECT site_id, patient_key FROM t WHERE x IN (SELECT 1)")
    assert "patient_key" not in _top_level_select_list("SELECT uniqExact(patient_key) AS n FROM t")


@pytest.mark.parametrize(
    "module",
    ["dashboards.macros", "dashboards.clickhouse", "dashboards.panels", "dashboards.generate", "dashboards.push",
     "dashboards.svg", "dashboards.query", *DASHBOARD_MODULES],
)
def test_doctests(module: str) -> None:
    failures, _ = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert failures == 0


def test_datasource_provisioning_file_as_grafana_reads_it() -> None:
    env = {
        "CLICKHOUSE_HOST": "clickhouse-journeys", "CLICKHOUSE_PORT": "9000", "CLICKHOUSE_PROTOCOL": "native",
        "CLICKHOUSE_SECURE": "false", "CLICKHOUSE_GRAFANA_USER": "grafana", "CLICKHOUSE_GRAFANA_PASSWORD": "pw",
    }
    (datasource,) = provisioned_datasources(env)
    assert datasource["uid"] == "journeys-clickhouse"
    assert datasource["type"] == "grafana-clickhouse-datasource"
    assert datasource["editable"] is False
    assert datasource["jsonData"]["defaultDatabase"] == "journeys"
    assert (datasource["jsonData"]["port"], datasource["jsonData"]["protocol"]) == ("9000", "native")
    assert datasource["jsonData"]["username"] == "grafana"
    assert datasource["secureJsonData"] == {"password": "pw"}
    # No secret in the file itself: only a reference to the environment.
    raw = (GENERATED_DIR.parent / "provisioning" / "datasources" / "clickhouse.yaml").read_text()
    assert "password: $CLICKHOUSE_GRAFANA_PASSWORD" in raw


def test_dashboard_provider_points_at_a_folder() -> None:
    path = GENERATED_DIR.parent / "provisioning" / "dashboards" / "journeys.yaml"
    document = yaml.safe_load(path.read_text())
    (provider,) = document["providers"]
    assert document["apiVersion"] == 1
    assert provider["type"] == "file"
    assert provider["folder"] == "Patient journeys"
    # The Helm chart mounts dashboardsConfigMaps.<name> at /var/lib/grafana/dashboards/<name>.
    assert provider["options"]["path"] == f"/var/lib/grafana/dashboards/{provider['name']}"


def test_cli_has_dashboards_generate_push_report() -> None:
    parser = build_parser()
    for argv in (["dashboards", "generate"], ["dashboards", "push", "--grafana-url", "http://g:3000"],
                 ["dashboards", "report", "--out", "r.html"]):
        args = parser.parse_args(argv)
        assert callable(args.run)
