"""The writer's HTTP endpoints (aiohttp), on ``writer_port``.

- ``GET /healthz``: 200 while the writer loop runs (liveness probe).
- ``GET /readyz``: 200 when ClickHouse answers and the consumer fetches from the broker, else
  503 (the body says which: ``clickhouse_ok``, ``kafka_ok``).
- ``GET /metrics``: Prometheus text format (rows per table, batches, errors, last commit).
- ``GET|POST /query?query=SELECT...&format=JSONEachRow``: one read-only statement run
  with ``readonly = 1`` through the writer's own ClickHouse client. With chdb only the
  writer's process can open the data directory, so this is how other processes read
  it while the writer runs (``journeys query`` falls back to it). Formats are
  ClickHouse output formats (JSONEachRow, JSON, CSVWithNames, TSVWithNames, ...).
  Answered for loopback clients only: it is a local tool, not an API (with a server,
  read the server), and the probes/metrics port is open to the cluster.
"""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING

from aiohttp import web

from runtime.logs import get_logger
from sinks.readonly import ReadOnlyError, check_read_only

if TYPE_CHECKING:
    from sinks.writer import SinkWriter

log = get_logger("sinks.http")
_FORMAT_RE = re.compile(r"^[A-Za-z0-9]+$")
_CONTENT_TYPES = {"JSON": "application/json", "JSONEachRow": "application/x-ndjson", "JSONCompact": "application/json"}


def _is_loopback(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


class WriterHttp:
    def __init__(self, writer: SinkWriter, host: str, port: int) -> None:
        self._writer = writer
        self._host, self._port = host, port
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_route("*", "/query", self._query)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self._host, self._port)
        await site.start()
        addresses = self._runner.addresses  # (host, port, ...) of each bound socket
        self.port = int(addresses[0][1]) if addresses else self._port
        log.info("writer_http_listening", host=self._host, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _healthz(self, _: web.Request) -> web.Response:
        ok = self._writer.alive
        return web.json_response({"status": "ok" if ok else "stalled"}, status=200 if ok else 503)

    async def _readyz(self, _: web.Request) -> web.Response:
        metrics = self._writer.metrics
        body = {
            "ready": metrics.ready,
            "clickhouse_ok": metrics.clickhouse_ok,
            "kafka_ok": metrics.kafka_ok,
            "assigned_partitions": metrics.assigned_partitions,
            "buffered_rows": metrics.buffered_rows,
            "last_commit_time": metrics.last_commit_time or None,
        }
        return web.json_response(body, status=200 if metrics.ready else 503)

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            text=self._writer.metrics.render(),
            content_type="text/plain",
            charset="utf-8",
            headers={"X-Content-Type-Options": "nosniff"},
        )

    async def _query(self, request: web.Request) -> web.Response:
        if not _is_loopback(request.remote):
            return web.json_response({"error": "/query answers local (loopback) clients only"}, status=403)
        sql = request.query.get("query") or (await request.text() if request.method == "POST" else "")
        fmt = request.query.get("format", "JSONEachRow")
        if not _FORMAT_RE.match(fmt):
            return web.json_response({"error": f"bad format {fmt!r}"}, status=400)
        try:
            statement = check_read_only(sql)
        except ReadOnlyError as error:
            return web.json_response({"error": str(error)}, status=400)
        try:
            body = await self._writer.read_query(statement, fmt)
        except Exception as error:
            return web.json_response({"error": str(error)}, status=400 if "Code:" in str(error) else 503)
        return web.Response(body=body, content_type=_CONTENT_TYPES.get(fmt, "text/plain"))
