"""Shared fixtures.

``broker``: ONE real Kafka broker process per test session and broker kind, on a free
port, with every topic of the default settings created with 4 partitions. Every test
that takes it runs on each kind, selected by ``JOURNEYS_TEST_BROKERS`` (default
``tansu,kafka``):

- ``tansu``: the embedded Kafka-compatible broker (``streams.broker.LocalBroker``);
- ``kafka``: a real Apache Kafka 4.x KRaft node (``streams.kafka_server.KafkaServer``;
  needs Java 17 and Maven; skipped locally without them, a failure under ``CI``);
- ``JOURNEYS_TEST_BOOTSTRAP=host:port``: instead of both, a cluster of your own (a
  Strimzi cluster, say); tests create uniquely named topics on it and delete nothing.

A test marked ``one_broker("kafka")`` (or ``"tansu"``) checks what the broker does not
decide (journey logic, edge mappings, dead letters): it runs on that kind only, or on
the first kind selected when that one is not. The arrival orders are split that way
between the two kinds, so each order runs once and the suite keeps under CI's limit.

Tests that need their own topics create uniquely named ones with ``make_topics`` (or
``streams.topics.ensure_topics``) so that tests never see each other's records.

    def test_something(broker):
        producer = KafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")

tansu quirks: no idempotent/transactional producers (acks="all", no idempotence), a
consumer group join waits session_timeout/2 (use ~3 s), end offsets lie (count records).
"""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import structlog

from runtime.config import Settings, load_settings
from streams.broker import LocalBroker
from streams.topics import ensure_topics

BROKER_PARTITIONS = 4


@dataclass(frozen=True)
class ExternalBroker:
    """A cluster the tests did not start (``JOURNEYS_TEST_BOOTSTRAP``)."""

    bootstrap: str
    kind: str = "external"


def _broker_kinds() -> list[str]:
    if os.environ.get("JOURNEYS_TEST_BOOTSTRAP"):
        return ["external"]
    return [kind.strip() for kind in os.environ.get("JOURNEYS_TEST_BROKERS", "tansu,kafka").split(",") if kind.strip()]


def start_kafka(**options: Any) -> Any:
    """A started Apache Kafka node for tests; skipped without Java and Maven, failed under CI."""
    from streams.kafka_server import KafkaServer, KafkaUnavailable

    # The tests use 3 s session timeouts (tansu joins take half of one); Kafka refuses
    # sessions under group.min.session.timeout.ms (6 s by default).
    extra = {"group.min.session.timeout.ms": "1000", **options.pop("extra_config", {})}
    server = KafkaServer(partitions=BROKER_PARTITIONS, extra_config=extra, **options)
    try:
        server.start()
    except KafkaUnavailable as error:
        server.close()
        if os.environ.get("CI"):
            pytest.fail(f"real Apache Kafka unavailable in CI: {error}", pytrace=False)
        pytest.skip(f"real Apache Kafka unavailable (Java 17 and Maven needed): {error}")
    return server


@pytest.fixture(scope="session", params=_broker_kinds())
def broker(request: pytest.FixtureRequest) -> Iterator[Any]:
    """The session's broker of one kind; ``broker.bootstrap`` is ``"HOST:PORT"``, ``broker.kind``
    ``tansu``, ``kafka`` or ``external``."""
    # Default settings, not the developer's environment: tests must not depend on
    # JOURNEYS_* variables set in the shell.
    topics = Settings.model_construct().all_topics
    kind = request.param
    if kind == "external":
        external = ExternalBroker(os.environ["JOURNEYS_TEST_BOOTSTRAP"])
        ensure_topics(external.bootstrap, topics, BROKER_PARTITIONS)
        yield external
    elif kind == "tansu":
        with LocalBroker(topics=topics, partitions=BROKER_PARTITIONS) as local:
            yield local
    elif kind == "kafka":
        server = start_kafka()
        try:
            ensure_topics(server.bootstrap, topics, BROKER_PARTITIONS)
            yield server
        finally:
            server.close()
    else:
        raise pytest.UsageError(f"JOURNEYS_TEST_BROKERS: unknown broker kind {kind!r} (tansu, kafka)")


_topic_counter = itertools.count()


@pytest.fixture
def make_topics(broker: Any) -> Callable[..., list[str]]:
    """Factory: ``make_topics("in", "out", partitions=4)`` creates fresh, unique topics.

    Returns the created names, prefixed so a test's records never mix with another's.
    """

    def make(*stems: str, partitions: int = BROKER_PARTITIONS) -> list[str]:
        run = f"{os.getpid()}-{uuid.uuid4().hex[:8]}-{next(_topic_counter)}"
        names = [f"test.{stem}.{run}" for stem in stems]
        ensure_topics(broker.bootstrap, names, partitions)
        return names

    return make


@pytest.fixture(scope="session")
def clickhouse_dsn(tmp_path_factory: pytest.TempPathFactory) -> str:
    """ONE ClickHouse for the whole session: ``CLICKHOUSE_URL`` (a real server,
    ``http://user:pass@host:8123``) when set, else embedded chdb in a session directory.

    chdb admits one data directory per process, so every test shares this one and
    isolates itself with a database of its own (see ``fresh_database``).
    """
    return os.environ.get("CLICKHOUSE_URL") or f"chdb:///{tmp_path_factory.mktemp('clickhouse')}"


@pytest.fixture
def fresh_database() -> str:
    """A database name no other test uses."""
    return f"test_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def isolated_settings(tmp_path: Path, clickhouse_dsn: str, fresh_database: str) -> Callable[..., Settings]:
    """Settings with fresh topics, consumer group and ClickHouse database per call: tests
    (and two pipelines in one test) never see each other's data."""

    def make(**overrides: Any) -> Settings:
        run = uuid.uuid4().hex[:8]
        topics = {f"topic_{name}": f"t{run}.{name}" for name in
                  ("scheduling", "checkin", "waits", "telehealth", "deadletter", "output", "patient_updates")}
        return load_settings(**{
            "app_id": f"journeys-{run}", "consumer_group": f"journeys-{run}", "data_dir": tmp_path / run,
            "clickhouse_dsn": clickhouse_dsn, "clickhouse_database": f"{fresh_database}_{run}",
            "session_timeout_s": 3.0, "batch_size": 500, **topics, **overrides})

    return make


@pytest.fixture(autouse=True)
def _restore_logging_config() -> Iterator[None]:
    """Undo a command's configure_logging after each test.

    ``journeys`` commands configure structlog to print to the *current* sys.stderr; under
    pytest that is the test's capture file, closed after the test, and every later log
    line (e.g. the session broker's shutdown) would fail with "I/O operation on closed file".
    """
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Every test that uses the real broker carries the "broker" marker, so
    # `pytest -m "not broker"` runs the quick ones only.
    kinds = _broker_kinds()
    kept: list[pytest.Item] = []
    other_kind: list[pytest.Item] = []
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)
        one = item.get_closest_marker("one_broker")
        callspec = getattr(item, "callspec", None)
        if one is not None and callspec is not None and "broker" in callspec.params:
            wanted = one.args[0] if one.args[0] in kinds else kinds[0]
            if callspec.params["broker"] != wanted:
                other_kind.append(item)
                continue
        kept.append(item)
    if other_kind:
        config.hook.pytest_deselected(items=other_kind)
        items[:] = kept


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3 loads its protocol schemas with importlib.resources' deprecated
    # read_text/open_text: hundreds of warnings per session that say nothing about us.
    config.addinivalue_line("filterwarnings", r"ignore:(read_text|open_text) is deprecated:DeprecationWarning")
