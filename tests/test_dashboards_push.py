"""``journeys dashboards push`` against a small fake Grafana: a real HTTP server on
127.0.0.1 that answers like Grafana's documented HTTP API and records every request.

Checked against the API docs: ``GET /api/datasources/uid/:uid`` (404 when missing),
``POST /api/datasources``, ``PUT /api/datasources/uid/:uid``, ``GET /api/folders``,
``POST /api/folders``, ``POST /api/dashboards/db`` (``overwrite``, ``folderUid``).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from cli.main import main
from dashboards.generate import load_generated
from dashboards.push import PushError, datasource_body

TOKEN = "glsa_test_token"


@dataclass
class Request:
    method: str
    path: str
    body: Any
    authorization: str


@dataclass
class FakeGrafana:
    """State and request log of the fake server."""

    requests: list[Request] = field(default_factory=list)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""

    def calls(self) -> list[tuple[str, str]]:
        return [(r.method, r.path) for r in self.requests]


def _handler(grafana: FakeGrafana) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # keep pytest output clean
            pass

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            grafana.requests.append(Request(self.command, self.path, body, self.headers.get("Authorization", "")))
            if self.headers.get("Authorization") != f"Bearer {TOKEN}":
                return self._answer(401, {"message": "Unauthorized"})
            route = (self.command, self.path)
            if self.command == "GET" and self.path.startswith("/api/datasources/uid/"):
                uid = self.path.rsplit("/", 1)[1]
                if uid not in grafana.datasources:
                    return self._answer(404, {"message": "Data source not found"})
                return self._answer(200, grafana.datasources[uid])
            if route == ("POST", "/api/datasources"):
                if any(d["name"] == body["name"] for d in grafana.datasources.values()):
                    return self._answer(409, {"message": "data source with the same name already exists"})
                stored = {**body, "id": len(grafana.datasources) + 1, "readOnly": False}
                grafana.datasources[body["uid"]] = stored
                return self._answer(200, {"datasource": stored, "id": stored["id"], "message": "Datasource added",
                                          "name": body["name"]})
            if self.command == "PUT" and self.path.startswith("/api/datasources/uid/"):
                uid = self.path.rsplit("/", 1)[1]
                if uid not in grafana.datasources:
                    return self._answer(404, {"message": "Data source not found"})
                grafana.datasources[uid] = {**grafana.datasources[uid], **body}
                return self._answer(200, {"datasource": grafana.datasources[uid], "id": grafana.datasources[uid]["id"],
                                          "message": "Datasource updated", "name": body["name"]})
            if route == ("GET", "/api/folders"):
                return self._answer(200, [{"id": f["id"], "uid": f["uid"], "title": f["title"]}
                                          for f in grafana.folders.values()])
            if route == ("POST", "/api/folders"):
                if body.get("uid") in grafana.folders:
                    return self._answer(409, {"message": "a folder with the same uid already exists"})
                folder = {"id": len(grafana.folders) + 1, "uid": body.get("uid") or "generated", "title": body["title"],
                          "url": f"/dashboards/f/{body.get('uid')}/", "version": 1}
                grafana.folders[folder["uid"]] = folder
                return self._answer(200, folder)
            if route == ("POST", "/api/dashboards/db"):
                dashboard = body["dashboard"]
                if dashboard["uid"] in grafana.dashboards and not body.get("overwrite"):
                    return self._answer(412, {"message": "The dashboard has been changed by someone else",
                                              "status": "version-mismatch"})
                if body.get("folderUid") not in grafana.folders:
                    return self._answer(400, {"message": "folder not found"})
                version = grafana.dashboards.get(dashboard["uid"], {}).get("version", 0) + 1
                grafana.dashboards[dashboard["uid"]] = {**dashboard, "version": version}
                return self._answer(200, {"id": len(grafana.dashboards), "uid": dashboard["uid"],
                                          "url": f"/d/{dashboard['uid']}/x", "status": "success",
                                          "version": version, "slug": "x"})
            return self._answer(404, {"message": "Not found"})

        do_GET = do_POST = do_PUT = _handle

    return Handler


@pytest.fixture
def grafana() -> Iterator[FakeGrafana]:
    state = FakeGrafana()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GRAFANA_USER", "GRAFANA_PASSWORD", "CLICKHOUSE_HOST", "CLICKHOUSE_PORT", "CLICKHOUSE_PROTOCOL",
                 "CLICKHOUSE_SECURE", "CLICKHOUSE_GRAFANA_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GRAFANA_TOKEN", TOKEN)
    monkeypatch.setenv("CLICKHOUSE_GRAFANA_PASSWORD", "ro-s3cret")


UIDS = [d["uid"] for d in load_generated()]


def test_first_push_creates_datasource_folder_and_dashboards(grafana: FakeGrafana, env: None,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dashboards", "push", "--grafana-url", grafana.url, "--clickhouse-host", "ch.journeys.svc"]) == 0

    assert grafana.calls() == [
        ("GET", "/api/datasources/uid/journeys-clickhouse"),
        ("POST", "/api/datasources"),
        ("GET", "/api/folders"),
        ("POST", "/api/folders"),
        *[("POST", "/api/dashboards/db")] * len(UIDS),
    ]
    assert all(r.authorization == f"Bearer {TOKEN}" for r in grafana.requests)

    datasource = grafana.requests[1].body
    assert datasource["uid"] == "journeys-clickhouse"
    assert datasource["type"] == "grafana-clickhouse-datasource"
    assert datasource["access"] == "proxy"
    assert datasource["jsonData"] == {
        "host": "ch.journeys.svc", "port": 8123, "protocol": "http", "secure": False, "username": "grafana",
        "defaultDatabase": "journeys", "dialTimeout": "10", "queryTimeout": "60",
    }
    assert datasource["secureJsonData"] == {"password": "ro-s3cret"}

    assert grafana.requests[3].body == {"title": "Patient journeys", "uid": "patient-journeys"}

    posted = [r.body for r in grafana.requests[4:]]
    assert [p["dashboard"]["uid"] for p in posted] == UIDS
    for payload, committed in zip(posted, load_generated()):
        assert payload["overwrite"] is True
        assert payload["folderUid"] == "patient-journeys"
        assert payload["dashboard"]["id"] is None
        assert {k: v for k, v in payload["dashboard"].items() if k != "id"} == committed

    out = capsys.readouterr().out
    assert "datasource: created" in out and "folder patient-journeys: created" in out
    assert "ro-s3cret" not in out


def test_second_push_updates_in_place(grafana: FakeGrafana, env: None) -> None:
    args = ["dashboards", "push", "--grafana-url", grafana.url, "--folder", "Clinic operations",
            "--clickhouse-port", "9000", "--clickhouse-protocol", "native"]
    assert main(args) == 0
    first = len(grafana.requests)
    assert main(args) == 0
    second = grafana.requests[first:]

    assert [(r.method, r.path) for r in second] == [
        ("GET", "/api/datasources/uid/journeys-clickhouse"),
        ("PUT", "/api/datasources/uid/journeys-clickhouse"),
        ("GET", "/api/folders"),
        *[("POST", "/api/dashboards/db")] * len(UIDS),
    ]
    assert second[1].body["jsonData"]["port"] == 9000
    assert second[1].body["jsonData"]["protocol"] == "native"
    assert second[1].body["id"] == 1  # the existing datasource's id
    assert all(r.body["folderUid"] == "clinic-operations" for r in second[3:])
    assert len(grafana.datasources) == 1 and list(grafana.folders) == ["clinic-operations"]
    assert {uid: d["version"] for uid, d in grafana.dashboards.items()} == {uid: 2 for uid in UIDS}


def test_an_existing_folder_with_the_same_title_is_reused(grafana: FakeGrafana, env: None) -> None:
    grafana.folders["abc123"] = {"id": 7, "uid": "abc123", "title": "Patient journeys"}
    assert main(["dashboards", "push", "--grafana-url", grafana.url, "--no-datasource"]) == 0
    assert ("POST", "/api/folders") not in grafana.calls()
    assert not any(path.startswith("/api/datasources") for _, path in grafana.calls())
    assert {r.body["folderUid"] for r in grafana.requests if r.path == "/api/dashboards/db"} == {"abc123"}


def test_a_provisioned_datasource_is_left_alone(grafana: FakeGrafana, env: None) -> None:
    grafana.datasources["journeys-clickhouse"] = {"id": 3, "uid": "journeys-clickhouse", "name": "x", "readOnly": True}
    assert main(["dashboards", "push", "--grafana-url", grafana.url]) == 0
    assert ("PUT", "/api/datasources/uid/journeys-clickhouse") not in grafana.calls()


def test_refusals_are_reported_not_raised(grafana: FakeGrafana, env: None, monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GRAFANA_TOKEN", "wrong")
    assert main(["dashboards", "push", "--grafana-url", grafana.url]) == 1
    assert "Grafana refused" in capsys.readouterr().err


def test_the_datasource_password_comes_only_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(PushError, match="CLICKHOUSE_GRAFANA_PASSWORD"):
        datasource_body({})
