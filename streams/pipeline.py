"""The whole pipeline on one machine: broker, stream workers, ClickHouse writer.

Used by ``journeys replay``, ``journeys demo`` and ``journeys up``. The local broker (unless a
bootstrap address is given) and the stream workers run as child processes; the
ClickHouse writer runs in this process, because embedded ClickHouse (chdb) admits one
process per data directory and this process also reads the results.

Catching up is decided by end-of-input markers, never by end offsets: after the input,
a marker goes to every partition of every input topic; the workers acknowledge it on
every output partition after everything before it, and the writer stores the
acknowledgement after everything before it, so when all acknowledgements are in
ClickHouse, so is everything else.
"""

from __future__ import annotations

import asyncio
import functools
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.children import free_port, spawn
from runtime.config import Settings
from runtime.logs import get_logger
from schemas.decode import Rejected, decode
from schemas.timestamps import MINUTE_MS, epoch_ms
from streams.broker import LocalBroker
from streams.markers import expected_marker_rows, new_marker_id, send_markers, wait_for_marker
from streams.topics import BrokerError, changelog_topics, ensure_pipeline_topics, make_admin

log = get_logger("streams.pipeline")

# Settings a child worker must share with this process (the rest come from the environment).
_WORKER_SETTINGS = ("session_timeout_s", "commit_interval_s", "partitions", "batch_size", "app_id", "consumer_group",
                    "topic_scheduling", "topic_checkin", "topic_waits", "topic_telehealth", "topic_deadletter",
                    "topic_output", "topic_patient_updates", "producer_max_batch_size", "store", "wrong_key",
                    "journey_retention_days", "too_late_after_days", "max_future_skew_min", "max_message_kb",
                    "watermark_idle_s", "allowed_lateness_min", "idempotent_producer")


@dataclass
class FeedCounts:
    """What the input held, as the contract judges it."""

    read: int = 0
    valid: int = 0
    invalid: Counter[str] = field(default_factory=Counter)
    max_occurred_ms: int | None = None
    appointments: set[str] = field(default_factory=set)  # of the valid events

    @property
    def dead_lettered(self) -> int:
        return sum(self.invalid.values())


class WorkerProcess:
    """``journeys worker`` as a child process with its own data directory and web port."""

    def __init__(self, settings: Settings, bootstrap: str, log_dir: Path, index: int):
        self.web_port = free_port()
        self.log_path = log_dir / f"worker-{index}.log"
        env = {
            **os.environ,
            "JOURNEYS_BOOTSTRAP": bootstrap,
            "JOURNEYS_WEB_PORT": str(self.web_port),
            "JOURNEYS_DATA_DIR": str(log_dir / f"worker-{index}"),
            **{f"JOURNEYS_{name.upper()}": str(getattr(settings, name)) for name in _WORKER_SETTINGS},
            "JOURNEYS_LOG_FORMAT": "json",
        }
        self.expected_exit: tuple[int, ...] = ()
        self.started = time.monotonic()
        self._log = self.log_path.open("ab")  # a restarted worker goes on in the same log
        self.process = spawn([sys.executable, "-m", "cli.main", "worker"], env=env, stdout=self._log,
                             stderr=subprocess.STDOUT)

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final commit (the crash a restart must survive)."""
        self.expected_exit = (-9,)
        self.process.kill()
        self.process.wait()

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=2) as response:
                return response.status, response.read()
        except OSError as error:
            status = getattr(error, "code", 0)
            return status, b""

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"stream worker exited with {self.process.returncode}:\n{self.log_tail()}")
            if self.get("/readyz")[0] == 200:
                return
            time.sleep(0.3)
        raise TimeoutError(f"stream worker not ready after {timeout:g} s:\n{self.log_tail()}")

    def metrics(self) -> dict[str, float]:
        status, body = self.get("/metrics")
        values: dict[str, float] = {}
        for line in body.decode().splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.partition(" ")
                values[name] = float(value)
        return values

    def log_tail(self, limit: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")

    def stop(self, timeout: float = 20.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class WriterThread:
    """The ClickHouse writer's event loop in a thread of this process."""

    def __init__(self, settings: Settings, bootstrap: str, http_port: int | None = None):
        from sinks.writer import SinkWriter, WriterConfig

        self.writer = SinkWriter(WriterConfig.from_settings(settings, bootstrap=bootstrap, port=http_port))
        self._loop = asyncio.new_event_loop()
        self._error: BaseException | None = None
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="clickhouse-writer", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._loop.run_until_complete(self.writer.run())
        except BaseException as error:  # noqa: BLE001 - reported by check()
            self._error = error

    def failed(self) -> str | None:
        """Why the writer is no longer running (``None`` while it runs)."""
        if self._error is not None:
            return f"{type(self._error).__name__}: {self._error}"
        return None if self._thread.is_alive() else "its loop ended"

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def check(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"ClickHouse writer failed: {self._error}") from self._error

    def stop(self, timeout: float = 60.0) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self.writer.request_stop)
            self._thread.join(timeout)
        self.check()


class LocalPipeline:
    """Broker (local unless ``bootstrap``), ``workers`` stream workers and the writer.

    >>> with LocalPipeline(settings) as pipeline:  # doctest: +SKIP
    ...     counts = pipeline.feed(lines, origin="day.jsonl")
    ...     pipeline.wait_until_processed(counts)
    """

    def __init__(self, settings: Settings, bootstrap: str | None = None, workers: int = 1,
                 writer_http: bool = False, port: int | None = None):
        """``writer_http``: serve the writer's /healthz /readyz /metrics /query on
        ``settings.writer_port`` (how others read embedded ClickHouse while it runs);
        ``port``: of the local broker (default: a free one)."""
        self._broker_port = port
        self.settings = settings
        self._writer_http = writer_http
        self._external_bootstrap = bootstrap
        self._workers_wanted = workers
        self.broker: LocalBroker | None = None
        self.workers: list[WorkerProcess] = []
        self.writer: WriterThread | None = None
        self.run_dir = Path(tempfile.mkdtemp(prefix="journeys-run-"))
        self.bootstrap = bootstrap or ""

    def __enter__(self) -> LocalPipeline:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        from sinks.client import connect
        from sinks.migrate import migrate

        settings = self.settings
        if self._external_bootstrap is None:
            self.broker = LocalBroker(port=self._broker_port, topics=(), partitions=settings.partitions).start()
            self.bootstrap = self.broker.bootstrap
        settings = self.settings = settings.model_copy(update={"bootstrap": self.bootstrap})
        ensure_pipeline_topics(settings)
        log.info("topics_ready", bootstrap=self.bootstrap, partitions=settings.partitions,
                 changelogs=changelog_topics(settings))
        self.client = connect(settings.dsn)
        migrate(self.client, settings.clickhouse_database, database_engine=settings.clickhouse_database_engine)
        self.writer = WriterThread(settings, self.bootstrap, settings.writer_port if self._writer_http else None)
        for _ in range(self._workers_wanted):
            self.start_worker(wait=False)
        for worker in self.workers:
            worker.wait_ready(timeout=120)
        log.info("pipeline_started", workers=len(self.workers), run_dir=str(self.run_dir))

    def start_worker(self, wait: bool = True) -> WorkerProcess:
        """One more stream worker in the consumer group (e.g. to replace a killed one)."""
        worker = WorkerProcess(self.settings, self.bootstrap, self.run_dir, len(self.workers))
        self.workers.append(worker)
        if wait:
            worker.wait_ready(timeout=120)
        return worker

    def replace_worker(self, index: int) -> WorkerProcess:
        """A new process for worker ``index`` (its data directory and log), the old one gone."""
        self.workers[index].stop(timeout=1.0)
        worker = self.workers[index] = WorkerProcess(self.settings, self.bootstrap, self.run_dir, index)
        return worker

    def replace_writer(self) -> None:
        """A new writer thread (the old one stopped); it resumes from the committed offsets."""
        self.writer = WriterThread(self.settings, self.bootstrap,
                                   self.settings.writer_port if self._writer_http else None)

    def feed(self, lines: Iterable[tuple[int, bytes]], origin: str = "input", progress: bool = True,
             total: int | None = None) -> FeedCounts:
        """Send every line to its family topic (unroutable ones to the dead-letter topic, and
        their dead-letter rows straight to the output topic, since no worker sees them)."""
        from tqdm import tqdm

        from streams.produce import EventProducer

        counts = FeedCounts()
        skew_ms = self.settings.max_future_skew_min * MINUTE_MS
        settings = self.settings
        bar = tqdm(total=total, unit="ev", unit_scale=True, disable=not progress, desc="produce", mininterval=0.5)
        with EventProducer(self.bootstrap, settings.topics, settings.topic_deadletter,
                           output_topic=settings.topic_output) as producer:
            for line_number, raw in lines:
                counts.read += 1
                verdict = decode(raw)
                if isinstance(verdict, Rejected):
                    counts.invalid[verdict.reason] += 1
                    # A routable line goes to its family topic, where the worker dead-letters it
                    # with its origin; an unroutable one to the dead-letter topic (and its row
                    # to the writer: no worker sees it).
                    producer.send_event(raw, origin, line_number)
                else:
                    occurred = epoch_ms(verdict.occurred_at)
                    if occurred > time.time() * 1000 + skew_ms:
                        # The worker refuses it (future_timestamp): it must not end event time either.
                        counts.invalid["future_timestamp"] += 1
                    else:
                        counts.valid += 1
                        counts.appointments.add(verdict.appointment_id)
                        if counts.max_occurred_ms is None or occurred > counts.max_occurred_ms:
                            counts.max_occurred_ms = occurred
                    # Decoded already: routed without parsing the JSON a second time.
                    producer.send_raw(settings.topics[verdict.family], None, verdict.appointment_id.encode(), raw)
                if counts.read % 5000 == 0:
                    bar.update(5000)
            bar.update(counts.read % 5000)
            bar.close()
            producer.flush()
        return counts

    def wait_until_processed(self, final: bool = True, end_ms: int | None = None, timeout: float = 600.0,
                             progress: bool = True) -> str:
        """Send an end-of-input marker and block until ClickHouse holds everything before it."""
        from sinks.markers import marker_rows

        marker_id = new_marker_id()
        send_markers(self.settings, self.bootstrap, marker_id, final, end_ms)

        def acknowledgements() -> int:
            self.check_alive()
            return marker_rows(self.client, self.settings.clickhouse_database, marker_id)

        wait_for_marker(acknowledgements, expected_marker_rows(self.settings), timeout, progress)
        return marker_id

    def check_alive(self) -> None:
        """Raise if the writer or a worker died."""
        assert self.writer is not None
        self.writer.check()
        for worker in self.workers:
            if worker.process.poll() not in (None, *worker.expected_exit):
                raise RuntimeError(f"stream worker exited with {worker.process.returncode}:\n{worker.log_tail()}")

    def worker_metrics(self) -> dict[str, float]:
        total: Counter[str] = Counter()
        for worker in self.workers:
            if worker.process.poll() is None:
                total.update(worker.metrics())
        return dict(total)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop workers (SIGTERM, then SIGKILL after ``timeout``: safe, a kill -9 loses nothing),
        the writer (it flushes what it holds, up to ``timeout``) and the local broker."""
        for worker in self.workers:
            worker.stop(timeout)
        if self.writer is not None:
            self.writer.stop(timeout)
            self.writer = None
        if self.broker is not None:
            self.broker.stop()
            self.broker = None


class Supervisor:
    """Keeps a :class:`LocalPipeline` running (``journeys up``): a worker or the writer that
    dies is started again after a growing pause (1 s, 2 s, 4 s ... up to 30 s), each time said
    in one line; after ``max_restarts`` deaths in a row of one part it gives up, saying why. A
    local broker that dies ends the pipeline (it kept its topics in memory: they are gone); an
    external one that stops answering is reported, and again when it is back.

    Call :meth:`tick` about once a second; it returns a reason to stop, or ``None``.
    """

    def __init__(self, pipeline: LocalPipeline, say: Callable[[str], None], max_restarts: int = 5):
        self.pipeline = pipeline
        self.say = say
        self.max_restarts = max_restarts
        self._deaths: Counter[str] = Counter()
        self._restart_at: dict[str, float] = {}
        self._broker_up = True
        self._broker_checked = 0.0

    def tick(self) -> str | None:
        pipeline = self.pipeline
        broker = pipeline.broker
        if broker is not None and broker.process is not None and broker.process.poll() is not None:
            return (f"the local broker exited with code {broker.process.returncode}; it kept every topic in memory, "
                    "so they are gone: start `journeys up` again and send the events again")
        if broker is None:
            self._watch_external_broker()
        for index, worker in enumerate(pipeline.workers):
            code = worker.process.poll()
            if code is not None and code not in worker.expected_exit:
                reason = self._restart(f"worker-{index}", f"stream worker {index} exited with code {code}",
                                       functools.partial(pipeline.replace_worker, index))
                if reason:
                    return reason
            elif worker.uptime_s() > 60:
                self._deaths[f"worker-{index}"] = 0  # up for a minute: a later death starts the count again
        writer = pipeline.writer
        if writer is not None and writer.failed() is not None:
            reason = self._restart("writer", f"the ClickHouse writer stopped: {writer.failed()}", pipeline.replace_writer)
            if reason:
                return reason
        elif writer is not None and writer.uptime_s() > 60:
            self._deaths["writer"] = 0
        return None

    def _restart(self, part: str, what: str, restart: Callable[[], object]) -> str | None:
        now = time.monotonic()
        due = self._restart_at.get(part)
        if due is None:
            self._deaths[part] += 1
            if self._deaths[part] > self.max_restarts:
                return f"{what}; {self.max_restarts} restarts in a row did not keep it up, giving up (log: {self.pipeline.run_dir})"
            pause = min(30.0, 2.0 ** (self._deaths[part] - 1))
            self._restart_at[part] = now + pause
            self.say(f"{what}; restarting it in {pause:g} s (restart {self._deaths[part]} of {self.max_restarts})")
            return None
        if now >= due:
            del self._restart_at[part]
            restart()
        return None

    def _watch_external_broker(self) -> None:
        now = time.monotonic()
        if now - self._broker_checked < 5.0:
            return
        self._broker_checked = now
        try:
            make_admin(self.pipeline.bootstrap, timeout_s=2.0).close()
            up = True
        except BrokerError:
            up = False
        if up != self._broker_up:
            self._broker_up = up
            self.say(f"Kafka at {self.pipeline.bootstrap} " + ("answers again" if up else
                     "does not answer; workers and writer wait for it (nothing is lost meanwhile)"))
