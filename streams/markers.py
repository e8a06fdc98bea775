"""End-of-input markers: know that everything sent so far is in ClickHouse.

End offsets and consumer lag do not say that (tansu's lie; any broker's say nothing of
the writer), so the pipeline carries markers. Both ends of the protocol live here:

1. **send**: a message with the :data:`MARKER_HEADER` header to every partition of every
   input topic (:func:`send_markers`), after the input;
2. **acknowledge**: each stream worker, on reading a marker on an input partition,
   sends one ``pipeline_markers`` row to every output partition after everything
   before it (:func:`acknowledgement`), once from the journey stage and, through the
   patient-updates topic, once per patient partition from the patient stage;
3. **store**: the writer inserts a partition's marker rows only after every earlier row
   of that partition (``sinks.rows``);
4. **wait**: :func:`wait_for_marker` polls the count of the marker's rows until all
   :func:`expected_marker_rows` are in (``sinks.markers.marker_rows``).

A ``final`` marker also ends event time: the watermark jumps to ``end_ms`` (or to the
latest event a worker saw), so no-shows up to it are decided, as at the end of a replay.

>>> value = marker_value("marker-1", final=True, end_ms=5)
>>> is_marker([(MARKER_HEADER, b"marker-1")]), is_marker([]), decode_marker(value)["end_ms"]
(True, False, 5)
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable
from typing import Any

import orjson

from runtime.config import Settings

MARKER_HEADER = "journeys-marker"
MARKER_KEY = b"__marker__"


def new_marker_id() -> str:
    return f"marker-{uuid.uuid4().hex[:12]}"


def marker_value(marker_id: str, final: bool, end_ms: int | None) -> bytes:
    return orjson.dumps({"marker_id": marker_id, "final": final, "end_ms": end_ms})


def decode_marker(value: bytes) -> dict[str, Any]:
    marker: dict[str, Any] = orjson.loads(value)
    return marker


def is_marker(headers: Any) -> bool:
    """Whether a message with these headers (a list of pairs, or a mapping) is a marker."""
    if not headers:
        return False
    items = headers.items() if hasattr(headers, "items") else headers
    return any(key == MARKER_HEADER for key, _ in items)


def acknowledgement(stage: str, marker: dict[str, Any], input_topic: str, input_partition: int) -> bytes:
    """The output message acknowledging ``marker`` for one input partition at ``stage``."""
    row = {"marker_id": marker["marker_id"], "stage": stage, "input_topic": input_topic,
           "input_partition": input_partition, "watermark": marker.get("end_ms")}
    return orjson.dumps({"pipeline_markers": [row]})


def expected_marker_rows(settings: Settings) -> int:
    """Journey acks: input partitions x output partitions; patient acks: x patient partitions too."""
    inputs = len(settings.input_topics) * settings.partitions
    return inputs * settings.partitions + inputs * settings.partitions * settings.partitions


def send_markers(settings: Settings, bootstrap: str, marker_id: str, final: bool, end_ms: int | None) -> None:
    """A marker to every partition of every input topic."""
    from streams.produce import EventProducer

    with EventProducer(bootstrap, settings.topics, settings.topic_deadletter) as producer:
        for topic in settings.input_topics:
            for partition in range(settings.partitions):
                producer.send_raw(topic, partition, MARKER_KEY, marker_value(marker_id, final, end_ms),
                                  [(MARKER_HEADER, marker_id.encode())])
        producer.flush()


def wait_for_marker(acknowledgements: Callable[[], int], expected: int, timeout: float,
                    progress: bool = False) -> int:
    """Block until ``acknowledgements()`` (the marker's rows in ClickHouse) reaches
    ``expected``; returns the count. :class:`TimeoutError`, saying how many arrived, after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    shown = -1
    while True:
        seen = acknowledgements()
        if progress and seen != shown:
            print(f"waiting for the pipeline: {seen}/{expected} end-of-input acknowledgements in ClickHouse",
                  file=sys.stderr, flush=True)
            shown = seen
        if seen >= expected:
            return seen
        if time.monotonic() > deadline:
            raise TimeoutError(f"pipeline not caught up after {timeout:g} s: {seen}/{expected} acknowledgements")
        time.sleep(0.2)
