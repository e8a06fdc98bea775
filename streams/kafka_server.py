"""A real Apache Kafka 4.x broker on demand (single KRaft node, 127.0.0.1 only).

The local tansu broker (:mod:`streams.broker`) is fast but is not Kafka: idempotent and
transactional producers fail on it and some offsets are unreliable. This module runs the
real thing for tests, CI and users who have Java, without Docker and without a Kafka
download: :func:`fetch_kafka_jars` resolves the broker's classpath from Maven Central
once into a cache outside the repository, and :class:`KafkaServer` formats a storage
directory and runs one combined broker+controller JVM on free loopback ports.

>>> from streams.kafka_server import KafkaServer
>>> with KafkaServer(partitions=4) as kafka:  # doctest: +SKIP
...     print(kafka.bootstrap)
...     kafka.restart()  # same port, same data on disk
127.0.0.1:40123

``journeys broker --kafka [--port N] [--data-dir D]`` runs one until Ctrl-C.

kafka-python (the readiness check) is imported when first needed, so importing this
module never costs a broker client.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from runtime.children import free_port, spawn
from runtime.logs import get_logger

log = get_logger(__name__)

DEFAULT_KAFKA_VERSION = "4.4.0"
CACHE_ENV_VAR = "JOURNEYS_KAFKA_CACHE"
HOST = "127.0.0.1"

# Small and single-threaded GC: tests share two cores with the workers and ClickHouse.
# C1 only (TieredStopAtLevel=1) roughly halves JIT CPU during start; pass jvm_options to
# a KafkaServer for throughput benchmarks.
DEFAULT_JVM_OPTIONS: tuple[str, ...] = (
    "-Xmx512m",
    "-Xms256m",
    "-XX:+UseSerialGC",
    "-XX:TieredStopAtLevel=1",
    "-XX:+ExitOnOutOfMemoryError",
    "-Djava.awt.headless=true",
)

_MARKER = ".complete"
_STATE_FILE = "journeys-kafka.json"
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_MVN_BOILERPLATE = ("To see the full", "Re-run Maven", "For more information", "[Help 1]")


class KafkaUnavailable(RuntimeError):
    """A real Kafka broker cannot be provided here; the message is one line saying why."""


# --------------------------------------------------------------------------- jars


def default_cache_dir(version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """``$JOURNEYS_KAFKA_CACHE/kafka-<version>``, else ``~/.cache/journeys/kafka-<version>``.

    The version is always part of the path so two Kafka versions never share a classpath;
    the environment variable names the root (CI caches that one directory).
    """
    root = os.environ.get(CACHE_ENV_VAR)
    base = Path(root).expanduser() if root else Path.home() / ".cache" / "journeys"
    return base / f"kafka-{version}"


def _java() -> str:
    """The java binary: ``$JAVA_HOME/bin/java`` when it exists, else the one on PATH."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        candidate = Path(java_home) / "bin" / "java"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("java")
    if not found:
        raise KafkaUnavailable("java not on PATH (Kafka 4.x needs a Java 17+ runtime; install one or set JAVA_HOME)")
    return found


_checked_java: dict[str, int] = {}


def _java_major(java: str) -> int:
    """Major version of ``java`` (checked once per binary: a Java 11 would fail much later)."""
    if java not in _checked_java:
        try:
            out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30).stderr
        except (OSError, subprocess.TimeoutExpired) as error:
            raise KafkaUnavailable(f"{java} -version failed: {error}") from error
        match = re.search(r'version "(\d+)(?:\.(\d+))?', out)
        if not match:
            raise KafkaUnavailable(f"cannot read the Java version from {java}: {out.strip()[:200]!r}")
        major = int(match.group(1))
        _checked_java[java] = int(match.group(2)) if major == 1 and match.group(2) else major
    major = _checked_java[java]
    if major < 17:
        raise KafkaUnavailable(f"{java} is Java {major}; the Kafka 4.x broker needs Java 17 or newer")
    return major


def _pom(version: str, log4j_version: str | None) -> str:
    """A throw-away project whose dependencies are the broker's classpath.

    ``kafka_2.13`` pulls in kafka-server, -metadata, -raft, -storage, -tools-api and the
    coordinators (``kafka.Kafka`` and ``kafka.tools.StorageTool`` both live in it), plus
    slf4j-api 1.7 and log4j-core, but no slf4j binding: without one the broker logs
    nothing at all. The binding must match log4j-core, so it is added in a second pass.
    """
    binding = (
        ""
        if log4j_version is None
        else (
            "    <dependency><groupId>org.apache.logging.log4j</groupId>"
            f"<artifactId>log4j-slf4j-impl</artifactId><version>{log4j_version}</version></dependency>\n"
        )
    )
    return (
        '<project xmlns="http://maven.apache.org/POM/4.0.0">\n'
        "  <modelVersion>4.0.0</modelVersion>\n"
        "  <groupId>local.journeys</groupId><artifactId>kafka-classpath</artifactId><version>1</version>\n"
        "  <packaging>pom</packaging>\n"
        "  <dependencies>\n"
        "    <dependency><groupId>org.apache.kafka</groupId>"
        f"<artifactId>kafka_2.13</artifactId><version>{version}</version></dependency>\n"
        f"{binding}"
        "  </dependencies>\n"
        "</project>\n"
    )


def _mvn_copy(mvn: str, project: Path, libs: Path, version: str, timeout_s: float) -> None:
    command = [
        mvn,
        "-B",
        "-q",
        "-U",  # retry a download that failed before (mvn caches failures)
        "-f",
        str(project / "pom.xml"),
        "dependency:copy-dependencies",
        f"-DoutputDirectory={libs}",
        "-DincludeScope=runtime",
    ]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s, cwd=project)
    except subprocess.TimeoutExpired as error:
        raise KafkaUnavailable(f"mvn did not resolve Kafka {version} within {timeout_s:g}s") from error
    if done.returncode != 0:
        lines = [
            _ANSI.sub("", line).removeprefix("[ERROR]").strip() for line in (done.stdout + done.stderr).splitlines()
        ]
        useful = [line for line in lines if line and not line.startswith(_MVN_BOILERPLATE)]
        tail = " | ".join(useful[-3:])[-600:]
        raise KafkaUnavailable(
            f"mvn could not resolve org.apache.kafka:kafka_2.13:{version} (exit {done.returncode}): {tail}"
        )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive flock on ``path``: two processes (pytest-xdist, CI jobs) fetch once."""
    with path.open("a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def fetch_kafka_jars(
    version: str = DEFAULT_KAFKA_VERSION,
    cache_dir: Path | str | None = None,
    *,
    timeout_s: float = 900.0,
) -> Path:
    """The directory of the Kafka ``version`` server jars (classpath ``<dir>/*``), fetched once.

    The jars are resolved with Maven (``mvn dependency:copy-dependencies``, using the
    user's Maven settings and ``~/.m2``) into ``cache_dir/libs`` (default
    :func:`default_cache_dir`). A ``.complete`` marker is written last and the copy is
    renamed into place, so an interrupted fetch is redone rather than half-used; a
    flock makes concurrent callers wait for one fetch. Raises :class:`KafkaUnavailable`
    when java or mvn is missing or resolution fails (with mvn's last output lines).
    """
    cache = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir(version)
    libs = cache / "libs"
    if (libs / _MARKER).is_file():
        return libs
    _java_major(_java())
    mvn = shutil.which("mvn")
    if not mvn:
        raise KafkaUnavailable(f"mvn not on PATH (needed once to fetch the Kafka {version} jars into {cache})")
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache / ".lock"):
        if (libs / _MARKER).is_file():  # another process fetched while we waited
            return libs
        started = time.monotonic()
        staging = cache / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        log.info("kafka_jars_fetching", version=version, cache=str(cache))
        (cache / "pom.xml").write_text(_pom(version, None))
        _mvn_copy(mvn, cache, staging, version, timeout_s)
        log4j = sorted(staging.glob("log4j-core-*.jar"))
        if log4j:
            log4j_version = log4j[0].name.removeprefix("log4j-core-").removesuffix(".jar")
            (cache / "pom.xml").write_text(_pom(version, log4j_version))
            _mvn_copy(mvn, cache, staging, version, timeout_s)
        if not (staging / f"kafka_2.13-{version}.jar").is_file():
            raise KafkaUnavailable(f"mvn finished but kafka_2.13-{version}.jar is not in {staging}")
        (staging / _MARKER).write_text(version + "\n")
        shutil.rmtree(libs, ignore_errors=True)
        staging.rename(libs)
        log.info(
            "kafka_jars_fetched",
            version=version,
            jars=len(list(libs.glob("*.jar"))),
            seconds=round(time.monotonic() - started, 1),
        )
    return libs


# --------------------------------------------------------------------------- broker


def _cluster_id() -> str:
    """A Kafka-style Uuid string (url-safe base64, no padding, never starting with '-')."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _tail(path: Path, lines: int = 15) -> str:
    try:
        content = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return " | ".join(line.strip() for line in content[-lines:] if line.strip())


_LOG4J2 = """\
# Written by streams.kafka_server: broker logs go to a file, never to the terminal.
status = warn
appender.file.type = RollingFile
appender.file.name = FILE
appender.file.fileName = {log}
appender.file.filePattern = {log}.%i
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
appender.file.policies.type = Policies
appender.file.policies.size.type = SizeBasedTriggeringPolicy
appender.file.policies.size.size = 50MB
appender.file.strategy.type = DefaultRolloverStrategy
appender.file.strategy.max = 2
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
logger.request.name = kafka.request.logger
logger.request.level = WARN
"""


class KafkaServer:
    """One single-node KRaft Apache Kafka (``process.roles=broker,controller``) on 127.0.0.1.

    ``data_dir`` (default: a new temporary directory, removed on :meth:`close`) holds
    ``server.properties``, the log4j2 config, ``server.log`` (:attr:`log_path`) and the
    partition data; it is formatted once, so a second server on the same directory (or
    :meth:`restart`) finds its topics and records again. Ports are free loopback ports
    picked at the first start and kept, also across processes via ``journeys-kafka.json``
    in the data dir: the controller's address is written into the KRaft voter set at
    format time and must not change.

    Defaults suit tests: replication factor 1 everywhere, no initial rebalance delay,
    ``auto.create.topics.enable=false`` (the pipeline declares its topics, as in prod),
    a 32 MB cleaner dedupe buffer. ``extra_config`` overrides any broker property, e.g.
    ``{"log.cleaner.backoff.ms": "200"}`` to see compaction within seconds.
    """

    kind = "kafka"

    def __init__(
        self,
        *,
        port: int | None = None,
        data_dir: Path | str | None = None,
        partitions: int = 1,
        extra_config: Mapping[str, str | int] | None = None,
        auto_create_topics: bool = False,
        version: str = DEFAULT_KAFKA_VERSION,
        cache_dir: Path | str | None = None,
        jvm_options: Sequence[str] = DEFAULT_JVM_OPTIONS,
        ready_timeout_s: float = 60.0,
        stop_timeout_s: float = 20.0,
    ) -> None:
        self._owns_data_dir = data_dir is None
        self._data_dir = Path(data_dir) if data_dir is not None else Path(tempfile.mkdtemp(prefix="journeys-kafka-"))
        self._port = port
        self._controller_port: int | None = None
        self._cluster_id: str | None = None
        self.partitions = partitions
        self.extra_config = {k: str(v) for k, v in (extra_config or {}).items()}
        self.auto_create_topics = auto_create_topics
        self.version = version
        self.cache_dir = cache_dir
        self.jvm_options = tuple(jvm_options)
        self.ready_timeout_s = ready_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._load_state()

    # -- properties -------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` of the PLAINTEXT listener (known after the first start)."""
        if self._port is None:
            raise RuntimeError("KafkaServer has no port yet: call start() first")
        return f"{HOST}:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        """PID of the running broker JVM, or None when it is not running."""
        return self._process.pid if self.running and self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def data_dir(self) -> Path:
        return self._data_dir

    @property
    def log_path(self) -> Path:
        """The broker's log4j log (read it when something fails)."""
        return self._data_dir / "server.log"

    @property
    def stdout_path(self) -> Path:
        """The JVM's own stdout/stderr (crashes before logging starts end up here)."""
        return self._data_dir / "jvm.out"

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> KafkaServer:
        """Start the broker (formatting storage on first use) and wait until it answers.

        Returns self. A no-op when already running. Raises :class:`KafkaUnavailable`
        with the log tail when the JVM exits or does not answer within ``ready_timeout_s``.
        """
        if self.running:
            return self
        java = _java()
        _java_major(java)
        libs = fetch_kafka_jars(self.version, self.cache_dir)
        started = time.monotonic()
        self._data_dir.mkdir(parents=True, exist_ok=True)
        # Auto-picked ports can be taken between picking and binding: pick again (only
        # before the first format, after which the controller port is part of the data).
        attempts = 3 if (self._port is None and self._controller_port is None) else 1
        for attempt in range(attempts):
            if self._port is None:
                self._port = free_port(HOST)
            if self._controller_port is None:
                self._controller_port = free_port(HOST, taken=[self._port])
            self._write_config()
            try:
                if not (self._storage_dir / "meta.properties").is_file():
                    self._format(java, libs)
                self._launch(java, libs)
                self._wait_ready(started)
                break
            except KafkaUnavailable:
                bind_clash = "Address already in use" in _tail(self.log_path, 200)
                self._kill()
                if not bind_clash or attempt == attempts - 1:
                    raise
                shutil.rmtree(self._storage_dir, ignore_errors=True)
                self._port = self._controller_port = self._cluster_id = None
        self._save_state()
        log.info(
            "kafka_started",
            bootstrap=self.bootstrap,
            pid=self.pid,
            version=self.version,
            seconds=round(time.monotonic() - started, 2),
            data_dir=str(self._data_dir),
        )
        return self

    def stop(self, *, hard: bool = False) -> None:
        """Stop the broker: SIGTERM (controlled shutdown), SIGKILL after ``stop_timeout_s``.

        ``hard=True`` sends SIGKILL at once (a crash: the next start runs log recovery).
        The data dir stays; :meth:`start` or :meth:`restart` brings the same broker back.
        """
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        if not hard:
            process.terminate()
            try:
                process.wait(timeout=self.stop_timeout_s)
                log.info("kafka_stopped", bootstrap=self.bootstrap, pid=process.pid)
                return
            except subprocess.TimeoutExpired:
                log.warning("kafka_stop_timeout", pid=process.pid, timeout_s=self.stop_timeout_s)
        process.kill()
        process.wait()
        log.info("kafka_killed", bootstrap=self.bootstrap, pid=process.pid)

    def wait(self, timeout_s: float | None = None) -> int | None:
        """Block until the broker exits (its exit code), or None after ``timeout_s``/if never started."""
        if self._process is None:
            return None
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def restart(self, *, hard: bool = False) -> KafkaServer:
        """Stop and start again on the same port with the same data on disk (see :meth:`stop`)."""
        self.stop(hard=hard)
        return self.start()

    def close(self) -> None:
        """Stop the broker and remove the data dir if this object created it."""
        self.stop()
        if self._owns_data_dir:
            shutil.rmtree(self._data_dir, ignore_errors=True)

    def __enter__(self) -> KafkaServer:
        try:
            return self.start()
        except BaseException:
            self.close()  # __exit__ will not run: do not leave a temp dir or a JVM behind
            raise

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        where = self.bootstrap if self._port is not None else "unstarted"
        return f"<KafkaServer {self.version} {where} pid={self.pid} data_dir={self._data_dir}>"

    # -- internals --------------------------------------------------------------------

    @property
    def _storage_dir(self) -> Path:
        return self._data_dir / "kafka-data"

    def _load_state(self) -> None:
        state_file = self._data_dir / _STATE_FILE
        if not state_file.is_file() or not (self._storage_dir / "meta.properties").is_file():
            return
        state = json.loads(state_file.read_text())
        self._controller_port = int(state["controller_port"])
        self._cluster_id = str(state["cluster_id"])
        if self._port is None:
            self._port = int(state["port"])

    def _save_state(self) -> None:
        state = {"port": self._port, "controller_port": self._controller_port, "cluster_id": self._cluster_id}
        (self._data_dir / _STATE_FILE).write_text(json.dumps(state) + "\n")

    def _config(self) -> dict[str, str]:
        controller = f"{HOST}:{self._controller_port}"
        config = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": controller,
            "listeners": f"PLAINTEXT://{HOST}:{self._port},CONTROLLER://{controller}",
            "advertised.listeners": f"PLAINTEXT://{HOST}:{self._port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": str(self._storage_dir),
            "num.partitions": str(self.partitions),
            "auto.create.topics.enable": str(self.auto_create_topics).lower(),
            "default.replication.factor": "1",
            "min.insync.replicas": "1",
            "offsets.topic.replication.factor": "1",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # After a crash (restart(hard=True)) the controller refuses the new broker
            # incarnation until the old session expires: 9 s by default, 4 s here.
            "broker.heartbeat.interval.ms": "500",
            "broker.session.timeout.ms": "4000",
            "log.cleaner.dedupe.buffer.size": str(32 * 1024 * 1024),
        }
        config.update(self.extra_config)
        return config

    def _write_config(self) -> None:
        lines = [f"{key}={value}" for key, value in self._config().items()]
        (self._data_dir / "server.properties").write_text("\n".join(lines) + "\n")
        (self._data_dir / "log4j2.properties").write_text(_LOG4J2.format(log=self.log_path))

    def _jvm(self, java: str, libs: Path) -> list[str]:
        return [
            java,
            *self.jvm_options,
            f"-Dlog4j2.configurationFile={self._data_dir / 'log4j2.properties'}",
            "-cp",
            f"{libs}{os.sep}*",
        ]

    def _format(self, java: str, libs: Path) -> None:
        """``kafka-storage format --standalone``: one node that is its own controller quorum."""
        self._cluster_id = self._cluster_id or _cluster_id()
        shutil.rmtree(self._storage_dir, ignore_errors=True)
        out = self._data_dir / "format.out"
        command = [
            *self._jvm(java, libs),
            "kafka.tools.StorageTool",
            "format",
            "-t",
            self._cluster_id,
            "-c",
            str(self._data_dir / "server.properties"),
            "--standalone",
        ]
        with out.open("wb") as sink:
            done = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, timeout=120)
        if done.returncode != 0:
            raise KafkaUnavailable(f"kafka storage format failed (exit {done.returncode}): {_tail(out)}")
        self._save_state()  # the controller port is now part of the data: keep it even if start fails

    def _launch(self, java: str, libs: Path) -> None:
        command = [*self._jvm(java, libs), "kafka.Kafka", str(self._data_dir / "server.properties")]
        with self.stdout_path.open("ab") as sink:
            self._process = spawn(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                cwd=self._data_dir,
                start_new_session=True,
            )

    def _wait_ready(self, started: float) -> None:
        """Until a kafka-python admin client can list topics (the broker serves metadata)."""
        deadline = started + self.ready_timeout_s
        last_error = "no answer"
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise KafkaUnavailable(
                    f"Kafka exited with code {self._process.returncode} during start: "
                    f"{_tail(self.log_path) or _tail(self.stdout_path)}"
                )
            if self._listening():
                try:
                    self._list_topics(timeout_s=max(1.0, min(5.0, deadline - time.monotonic())))
                    return
                except Exception as error:  # noqa: BLE001 - any failure means "not ready yet"
                    last_error = f"{type(error).__name__}: {error}"
            time.sleep(0.2)
        raise KafkaUnavailable(
            f"Kafka at {self.bootstrap} not ready within {self.ready_timeout_s:g}s ({last_error}): "
            f"{_tail(self.log_path)}"
        )

    def _listening(self) -> bool:
        assert self._port is not None
        try:
            with socket.create_connection((HOST, self._port), timeout=0.5):
                return True
        except OSError:
            return False

    def _list_topics(self, timeout_s: float) -> list[str]:
        from kafka.admin import KafkaAdminClient

        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap,
            "client_id": "journeys-kafka-ready",
            "request_timeout_ms": int(timeout_s * 1000),
        }
        if "bootstrap_timeout_ms" in KafkaAdminClient.DEFAULT_CONFIG:  # kafka-python >= 2.1
            options["bootstrap_timeout_ms"] = int(timeout_s * 1000)
        admin = KafkaAdminClient(**options)
        try:
            return list(admin.list_topics())
        finally:
            admin.close()

    def _kill(self) -> None:
        self.stop(hard=True)
