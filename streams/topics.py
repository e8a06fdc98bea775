"""The topics the pipeline needs, and creating them on any Kafka.

:func:`ensure_topics` creates missing topics and refuses to go on when an existing
topic has a different partition count (the journey key would then hash to other
partitions); :func:`ensure_pipeline_topics` does so for every topic of the settings,
changelogs included.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from runtime.config import Settings
from runtime.logs import get_logger

log = get_logger(__name__)


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


def changelog_topics(settings: Settings) -> tuple[str, ...]:
    """The changelog topics of the worker's tables (Faust names them ``<app>-<table>-changelog``)."""
    return tuple(f"{settings.app_id}-{table}-changelog" for table in ("journey_state", "journey_archive", "patient_state"))


# A table's changelog keeps the latest state per key: compacted, never deleted by age
# (Faust creates its changelogs so; these are created before Faust sees them).
CHANGELOG_CONFIG = {"cleanup.policy": "compact"}


def ensure_pipeline_topics(settings: Settings) -> list[str]:
    """Every input, output and changelog topic, with ``settings.partitions`` partitions each,
    so that one appointment's events meet in one worker (co-partitioning)."""
    changelogs = changelog_topics(settings)
    return ensure_topics(settings.bootstrap, (*settings.all_topics, *changelogs), settings.partitions,
                         settings.replication_factor, configs={name: CHANGELOG_CONFIG for name in changelogs})


def make_admin(bootstrap: str, timeout_s: float = 10.0) -> Any:
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
    admin = make_admin(bootstrap)
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
    configs: Mapping[str, Mapping[str, str]] | None = None,
) -> list[str]:
    """Create the topics of ``names`` that do not exist yet; return the names created.

    ``configs``: topic configs by name, for the topics created here (e.g. a changelog's
    ``cleanup.policy=compact``); existing topics are left as they are.

    Raises :class:`TopicMismatchError` when an existing topic has another partition
    count: events keyed by ``appointment_id`` would land on other partitions than the
    pipeline expects, and neither Kafka nor tansu can shrink a topic.
    """
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    wanted = list(dict.fromkeys(names))
    admin = make_admin(bootstrap)
    try:
        existing = set(admin.list_topics())
        missing = [name for name in wanted if name not in existing]
        if missing:
            new = [NewTopic(name, partitions, replication_factor, topic_configs=dict((configs or {}).get(name, {})))
                   for name in missing]
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
