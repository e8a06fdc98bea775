"""Create or update the ClickHouse datasource, a folder and the dashboards in a running Grafana.

Idempotent, through Grafana's HTTP API (``grafana-client``):

1. datasource ``journeys-clickhouse``: ``GET /api/datasources/uid/:uid``, then
   ``PUT /api/datasources/uid/:uid`` if it exists (unless it is provisioned from a file,
   which Grafana makes read-only), else ``POST /api/datasources``. The body is the
   provisioning file ``provisioning/datasources/clickhouse.yaml`` with its ``$VARS``
   expanded the way Grafana expands them, so both routes give the same datasource;
2. folder: ``GET /api/folders``, ``POST /api/folders`` if no folder has its uid or title;
3. every dashboard: ``POST /api/dashboards/db`` with ``overwrite: true`` and ``folderUid``.

>>> expand_env("http://$HOST:${PORT}/x $$HOME", {"HOST": "ch", "PORT": "8123"})
'http://ch:8123/x $HOME'
>>> folder_uid("Patient journeys")
'patient-journeys'
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

DATASOURCE_FILE = Path(__file__).parent / "provisioning" / "datasources" / "clickhouse.yaml"
DEFAULT_FOLDER = "Patient journeys"
PASSWORD_ENV = "CLICKHOUSE_GRAFANA_PASSWORD"

# Values used for the datasource when the environment does not set them (HTTP, the
# in-cluster ClickHouse service, the read-only `grafana` user).
DATASOURCE_DEFAULTS: dict[str, str] = {
    "CLICKHOUSE_HOST": "clickhouse-journeys",
    "CLICKHOUSE_PORT": "8123",
    "CLICKHOUSE_PROTOCOL": "http",
    "CLICKHOUSE_SECURE": "false",
    "CLICKHOUSE_GRAFANA_USER": "grafana",
}

_ENV_RE = re.compile(r"\$\{([^}]*)\}|\$([A-Za-z0-9_]+)")


class PushError(RuntimeError):
    """Grafana refused something; the message says what and why."""


def expand_env(value: str, env: Mapping[str, str]) -> str:
    """Grafana's provisioning interpolation: ``$NAME`` / ``${NAME}``, ``$$`` for a dollar."""
    return "$".join(_ENV_RE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), part) for part in value.split("$$"))


def _expand(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return expand_env(node, env)
    if isinstance(node, list):
        return [_expand(item, env) for item in node]
    if isinstance(node, dict):
        return {key: _expand(value, env) for key, value in node.items()}
    return node


def provisioned_datasources(env: Mapping[str, str], path: Path = DATASOURCE_FILE) -> list[dict[str, Any]]:
    """The datasources of a provisioning file, as Grafana reads them with ``env``."""
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return [_expand(item, env) for item in document.get("datasources", [])]


def datasource_body(env: Mapping[str, str], path: Path = DATASOURCE_FILE) -> dict[str, Any]:
    """The ``POST /api/datasources`` body for the journeys datasource.

    ``env`` falls back to :data:`DATASOURCE_DEFAULTS`; the password must be in ``env``.

    >>> body = datasource_body({"CLICKHOUSE_GRAFANA_PASSWORD": "s3cret", "CLICKHOUSE_PORT": "9000",
    ...                         "CLICKHOUSE_PROTOCOL": "native"})
    >>> body["uid"], body["jsonData"]["port"], body["jsonData"]["protocol"], body["jsonData"]["secure"]
    ('journeys-clickhouse', 9000, 'native', False)
    """
    if not env.get(PASSWORD_ENV):
        raise PushError(f"{PASSWORD_ENV} is not set: the datasource needs the read-only ClickHouse user's password")
    merged = {**DATASOURCE_DEFAULTS, **{k: v for k, v in env.items() if v}}
    (item,) = provisioned_datasources(merged, path)
    body: dict[str, Any] = {key: item[key] for key in ("name", "uid", "type", "access", "isDefault") if key in item}
    json_data = dict(item.get("jsonData", {}))
    # Provisioning hands the plugin strings; the API (and the plugin's config page) use
    # a number and a boolean.
    json_data["port"] = int(json_data["port"])
    json_data["secure"] = str(json_data.get("secure", "false")).lower() == "true"
    body["jsonData"] = json_data
    body["secureJsonData"] = dict(item.get("secureJsonData", {}))
    return body


def folder_uid(title: str) -> str:
    """A folder uid derived from its title (lowercase, dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:40] or "journeys"


@dataclass
class PushResult:
    """What ``push`` did: ``created`` / ``updated`` / ``kept`` per object."""

    datasource: str = "skipped"
    folder: str = "kept"
    folder_uid: str = ""
    dashboards: list[tuple[str, str]] = field(default_factory=list)  # (uid, url)

    def lines(self) -> list[str]:
        lines = [f"datasource: {self.datasource}", f"folder {self.folder_uid}: {self.folder}"]
        lines += [f"dashboard {uid}: {url}" for uid, url in self.dashboards]
        return lines


def _status(error: Exception) -> int | None:
    return getattr(error, "status_code", None)


def push_datasource(api: Any, body: Mapping[str, Any]) -> str:
    """Create or update the datasource; ``kept`` when Grafana has it from a provisioning file."""
    from grafana_client.client import GrafanaClientError

    uid = str(body["uid"])
    try:
        existing = api.datasource.get_datasource_by_uid(uid)
    except GrafanaClientError as error:
        if _status(error) != 404:
            raise
        existing = None
    if existing is None:
        api.datasource.create_datasource(dict(body))
        return "created"
    if existing.get("readOnly"):
        return "kept (provisioned from a file: Grafana does not let the API change it)"
    api.datasource.update_datasource_by_uid(uid, {**body, "id": existing.get("id")})
    return "updated"


def push_folder(api: Any, title: str) -> tuple[str, str]:
    """The uid of the folder titled ``title`` (created if missing) and what happened."""
    uid = folder_uid(title)
    for folder in api.folder.get_all_folders() or []:
        if folder.get("uid") == uid or folder.get("title") == title:
            return str(folder["uid"]), "kept"
    created = api.folder.create_folder(title, uid=uid)
    return str(created.get("uid", uid)), "created"


def push(
    api: Any,
    dashboards: Sequence[Mapping[str, Any]],
    *,
    folder_title: str = DEFAULT_FOLDER,
    datasource: Mapping[str, Any] | None = None,
) -> PushResult:
    """Datasource (if a body is given), folder, then every dashboard (overwrite by uid)."""
    from grafana_client.client import GrafanaException

    result = PushResult()
    try:
        if datasource is not None:
            result.datasource = push_datasource(api, datasource)
        result.folder_uid, result.folder = push_folder(api, folder_title)
        for dashboard in dashboards:
            # Grafana matches on uid; a numeric id from another instance would clash.
            payload = {
                "dashboard": {**dashboard, "id": None},
                "folderUid": result.folder_uid,
                "overwrite": True,
                "message": "journeys dashboards push",
            }
            answer = api.dashboard.update_dashboard(payload)
            result.dashboards.append((str(dashboard["uid"]), str(answer.get("url", ""))))
    except GrafanaException as error:
        raise PushError(f"Grafana refused the request: {error}") from error
    return result


def grafana_api(url: str, env: Mapping[str, str], timeout: float = 10.0) -> Any:
    """A ``GrafanaApi`` for ``url``: token from ``GRAFANA_TOKEN``, else basic auth from
    ``GRAFANA_USER`` / ``GRAFANA_PASSWORD``, else credentials in the URL."""
    from grafana_client import GrafanaApi

    credential: str | tuple[str, str] | None = None
    if env.get("GRAFANA_TOKEN"):
        credential = env["GRAFANA_TOKEN"]
    elif env.get("GRAFANA_USER") and env.get("GRAFANA_PASSWORD"):
        credential = (env["GRAFANA_USER"], env["GRAFANA_PASSWORD"])
    elif "@" not in url:
        raise PushError(
            "no Grafana credentials: set GRAFANA_TOKEN (service account token) or GRAFANA_USER and GRAFANA_PASSWORD"
        )
    return GrafanaApi.from_url(url, credential=credential, timeout=timeout)
