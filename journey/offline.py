"""Run the journey logic over event lines without a broker: the reference pipeline.

The same edge, processors and batch step as the Faust worker, fed in batches in file
order, with the end of input treated as final (watermark = largest ``occurred_at``).
Tests compare the streaming pipeline with it, and dashboards tests load data through
it. Built from settings by :func:`streams.assemble.offline_pipeline`.

>>> from journey.ingest import Edge
>>> from journey.metrics import JourneyPolicy
>>> from journey.offline import OfflinePipeline
>>> from journey.processor import JourneyProcessor
>>> from journey.pseudonym import Pseudonymizer
>>> pipeline = OfflinePipeline(Edge(Pseudonymizer(b"k" * 32)),
...     JourneyProcessor(JourneyPolicy(), rules=(), lateness_ms=0, retention_ms=0))
>>> result = pipeline.run([b'{"event_type": "appointment.booked"}'])
>>> result.counts["dead_lettered"], result.rows("deadletters")[0]["reason"]
(1, 'missing_field')
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from journey.batch import JourneyStep, PatientStep, Record, StepOutput
from journey.ingest import Edge
from journey.processor import NO_WATERMARK, JourneyProcessor, JourneyStores, PatientProcessor, collector_paused
from journey.state import Bundle


@dataclass
class OfflineResult:
    bundles: list[Bundle] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def rows(self, table: str) -> list[dict[str, Any]]:
        return [row for bundle in self.bundles for row in bundle.get(table, ())]

    def latest(self, table: str, key: str) -> dict[str, Any]:
        """The surviving row per key, as ClickHouse's FINAL would keep it (largest version)."""
        kept: dict[Any, dict[str, Any]] = {}
        for row in self.rows(table):
            known = kept.get(row[key])
            if known is None or row["version"] >= known["version"]:
                kept[row[key]] = row
        return kept


class OfflinePipeline:
    def __init__(self, edge: Edge, journeys: JourneyProcessor, batch_size: int = 2000,
                 too_late_ms: int | None = None):
        self.journeys = journeys
        self.step = JourneyStep(edge, journeys, patient_partition=lambda patient_key: 0, too_late_ms=too_late_ms)
        self.patients = PatientStep(PatientProcessor())
        self.batch_size = batch_size
        self.journey_stores = JourneyStores(hot={}, archive={})
        self.patient_store: dict[str, bytes] = {}

    # Paused for the whole run, not per batch: the result keeps every row made so far, and
    # each full collection would rescan them all (another 10-15% of the run).
    @collector_paused
    def run(self, lines: Iterable[bytes]) -> OfflineResult:
        result = OfflineResult()
        batch: list[Record] = []
        max_seen = NO_WATERMARK
        for line_number, line in enumerate(lines, start=1):
            batch.append(Record(line, None, 0, line_number))
            if len(batch) >= self.batch_size:
                max_seen = max(max_seen, self._batch(batch, result))
                batch = []
        if batch:
            max_seen = max(max_seen, self._batch(batch, result))
        # End of input is final.
        self.journeys.watermark.finish(max_seen)
        self._collect(self.step.fire(0, self.journey_stores), result)
        self.patients.patients.watermark.finish(max_seen)
        self._patients({}, result)
        result.counts["duplicates"] = self.journeys.duplicates
        result.counts["late_events"] = self.journeys.late_events
        result.counts["too_late"] = self.step.too_late
        return result

    def _batch(self, records: list[Record], result: OfflineResult) -> int:
        out = self.step.run(records, lambda partition: self.journey_stores)
        result.counts["read"] += len(records)
        result.counts["valid"] += out.valid
        result.counts["dead_lettered"] += len(out.dead)
        self._collect(out, result)
        return max((row["occurred_at"] for row in out.rows("events")), default=NO_WATERMARK)

    def _collect(self, out: StepOutput, result: OfflineResult) -> None:
        result.bundles.extend(out.bundles)
        result.counts["journey_versions"] += out.versions
        self._patients(out.patient_updates, result)

    def _patients(self, updates: dict[int, dict[str, list[dict[str, Any]]]], result: OfflineResult) -> None:
        result.bundles.extend(self.patients.run(updates, lambda partition: self.patient_store, partitions=(0,)).bundles)
