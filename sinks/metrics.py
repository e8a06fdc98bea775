"""The writer's counters, rendered in the Prometheus text exposition format.

>>> metrics = WriterMetrics()
>>> metrics.rows_written["events"] += 3
>>> print(metrics.render().splitlines()[2])
journeys_writer_rows_written_total{table="events"} 3
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field


@dataclass
class WriterMetrics:
    rows_written: Counter[str] = field(default_factory=Counter)
    rows_rejected: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    failures: Counter[str] = field(default_factory=Counter)  # by sinks.faults.Fault value
    skipped_buckets: int = 0
    messages: int = 0
    batches: int = 0
    batch_seconds_sum: float = 0.0
    last_commit_time: float = 0.0
    buffered_rows: int = 0
    assigned_partitions: int = 0
    ready: bool = False
    clickhouse_ok: bool = False
    kafka_ok: bool = False
    started_at: float = field(default_factory=time.time)

    def render(self) -> str:
        """Prometheus text format, version 0.0.4."""
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {_number(value)}" for labels, value in samples)

        family(
            "journeys_writer_rows_written_total",
            "counter",
            "Rows inserted into ClickHouse, per table (site_hourly: buckets recomputed).",
            [(f'{{table="{_escape(t)}"}}', n) for t, n in sorted(self.rows_written.items())],
        )
        family(
            "journeys_writer_rows_rejected_total",
            "counter",
            "Rows that cannot be inserted (bad value, refused by ClickHouse, unknown table, not a bundle:"
            " table ?), set aside in rejected_rows.",
            [(f'{{table="{_escape(t)}"}}', n) for t, n in sorted(self.rows_rejected.items())],
        )
        family(
            "journeys_writer_failures_total",
            "counter",
            "Failed writes by kind: transient (ClickHouse down or overloaded: the batch is retried with backoff),"
            " data (an insert or site_hourly recompute refused for its data: the bad rows are set aside).",
            [(f'{{kind="{k}"}}', self.failures[k]) for k in sorted({"transient", "data", *self.failures})],
        )
        family(
            "journeys_writer_site_hourly_skipped_buckets_total",
            "counter",
            "site_hourly buckets ClickHouse refused to recompute (logged as site_hourly_bucket_skipped).",
            [("", self.skipped_buckets)],
        )
        family("journeys_writer_messages_total", "counter", "Output-topic messages consumed.", [("", self.messages)])
        family("journeys_writer_batches_total", "counter", "Batches inserted and committed.", [("", self.batches)])
        family(
            "journeys_writer_batch_seconds",
            "summary",
            "Time to insert a batch into ClickHouse.",
            [("_sum", self.batch_seconds_sum), ("_count", self.batches)],
        )
        family(
            "journeys_writer_errors_total",
            "counter",
            "Errors by kind: insert (ClickHouse), commit (Kafka offsets), decode (bad message), consumer.",
            [
                (f'{{kind="{k}"}}', self.errors[k])
                for k in sorted({"insert", "commit", "decode", "consumer", *self.errors})
            ],
        )
        family(
            "journeys_writer_last_commit_timestamp_seconds",
            "gauge",
            "Unix time of the last offset commit after a successful insert (0: none yet).",
            [("", self.last_commit_time)],
        )
        family(
            "journeys_writer_buffered_rows", "gauge", "Rows consumed but not yet inserted.", [("", self.buffered_rows)]
        )
        family(
            "journeys_writer_assigned_partitions",
            "gauge",
            "Output-topic partitions assigned to this writer.",
            [("", self.assigned_partitions)],
        )
        family(
            "journeys_writer_ready",
            "gauge",
            "1 when ClickHouse answers and the consumer fetches from the broker.",
            [("", int(self.ready))],
        )
        family("journeys_writer_clickhouse_up", "gauge", "1 while ClickHouse answers.", [("", int(self.clickhouse_ok))])
        family(
            "journeys_writer_kafka_up",
            "gauge",
            "1 while the consumer's fetches from the broker succeed.",
            [("", int(self.kafka_ok))],
        )
        family("journeys_writer_start_time_seconds", "gauge", "Unix time the writer started.", [("", self.started_at)])
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _escape(label: str) -> str:
    return label.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
