"""Shared fixtures.

``broker``: ONE real local Kafka-compatible broker (tansu) per test session, on a free
port, with every topic of the default settings created with 4 partitions. Tests that
need their own topics create uniquely named ones with ``make_topics`` (or
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

import pytest
import structlog

from runtime.config import Settings
from streams.broker import LocalBroker
from streams.topics import ensure_topics

BROKER_PARTITIONS = 4


@pytest.fixture(scope="session")
def broker() -> Iterator[LocalBroker]:
    """The session's local broker; ``broker.bootstrap`` is ``"127.0.0.1:PORT"``."""
    # Default settings, not the developer's environment: tests must not depend on
    # JOURNEYS_* variables set in the shell.
    settings = Settings.model_construct()
    with LocalBroker(topics=settings.all_topics, partitions=BROKER_PARTITIONS) as local:
        yield local


_topic_counter = itertools.count()


@pytest.fixture
def make_topics(broker: LocalBroker) -> Callable[..., list[str]]:
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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every test that uses the real broker carries the "broker" marker, so
    # `pytest -m "not broker"` runs the quick ones only.
    for item in items:
        if "broker" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.broker)


def pytest_configure(config: pytest.Config) -> None:
    # kafka-python 3 loads its protocol schemas with importlib.resources' deprecated
    # read_text/open_text: hundreds of warnings per session that say nothing about us.
    config.addinivalue_line("filterwarnings", r"ignore:(read_text|open_text) is deprecated:DeprecationWarning")
