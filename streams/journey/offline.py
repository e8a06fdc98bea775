"""Run the journey logic over event lines without a broker: the reference pipeline.

The same edge, processors and rows as the Faust worker, fed in batches in file order,
with the end of input treated as final (watermark = largest ``occurred_at``). Tests
compare the streaming pipeline with it, and dashboards tests load data through it.

>>> from streams.journey.offline import OfflinePipeline
>>> pipeline = OfflinePipeline.from_settings()
>>> result = pipeline.run([b'{"event_type": "appointment.booked"}'])
>>> result.counts["dead_lettered"], result.bundles[0]["deadletters"][0]["reason"]
(1, 'missing_field')
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from streams.config import Settings, load_settings
from streams.journey.facts import Fact
from streams.journey.friction import load_rules
from streams.journey.ingest import Accepted, Edge
from streams.journey.metrics import JourneyPolicy
from streams.journey.processor import NO_WATERMARK, JourneyProcessor, PatientProcessor
from streams.journey.pseudonym import Pseudonymizer
from streams.journey.state import Bundle

MINUTE_MS = 60_000


def policy_from(settings: Settings) -> JourneyPolicy:
    return JourneyPolicy(
        no_show_grace_min=settings.no_show_grace_min,
        late_cancel_window_h=settings.late_cancel_window_h,
        close_after_h=settings.journey_close_after_h,
    )


def journey_processor_from(settings: Settings) -> JourneyProcessor:
    return JourneyProcessor(
        policy_from(settings),
        load_rules(settings.friction_rules_file),
        lateness_ms=round(settings.allowed_lateness_min * MINUTE_MS),
        retention_ms=round(settings.journey_retention_days * 1440 * MINUTE_MS),
    )


def edge_from(settings: Settings) -> Edge:
    return Edge(Pseudonymizer(settings.pseudonym_secret), settings.topics, settings.attributes_allowlist)


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
    def __init__(self, edge: Edge, journeys: JourneyProcessor, batch_size: int = 2000):
        self.edge = edge
        self.journeys = journeys
        self.patients = PatientProcessor()
        self.batch_size = batch_size
        self.journey_store: dict[str, bytes] = {}
        self.patient_store: dict[str, bytes] = {}

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> OfflinePipeline:
        settings = settings or load_settings()
        return cls(edge_from(settings), journey_processor_from(settings), settings.batch_size)

    def run(self, lines: Iterable[bytes]) -> OfflineResult:
        result = OfflineResult()
        batch: list[bytes] = []
        line_number = 0
        max_seen = NO_WATERMARK
        for line_number, line in enumerate(lines, start=1):
            batch.append(line)
            if len(batch) >= self.batch_size:
                max_seen = max(max_seen, self._batch(batch, line_number - len(batch) + 1, result))
                batch = []
        if batch:
            max_seen = max(max_seen, self._batch(batch, line_number - len(batch) + 1, result))
        # End of input is final.
        self.journeys.watermark.finish(max_seen)
        self._patients(self.journeys.fire(self.journey_store, 0), result)
        self.patients.watermark.finish(max_seen)
        result.bundles.extend(emission.bundle for emission in self.patients.fire(self.patient_store, 0))
        result.counts["duplicates"] = self.journeys.duplicates
        result.counts["late_events"] = self.journeys.late_events
        return result

    def _batch(self, lines: list[bytes], first_line: int, result: OfflineResult) -> int:
        by_appointment: dict[str, list[Fact]] = defaultdict(list)
        event_rows: list[dict[str, Any]] = []
        dead: list[dict[str, Any]] = []
        max_seen = NO_WATERMARK
        for offset, line in enumerate(lines, start=first_line):
            outcome = self.edge.accept(line, None, 0, offset)
            result.counts["read"] += 1
            if isinstance(outcome, Accepted):
                result.counts["valid"] += 1
                by_appointment[outcome.appointment_id].append(outcome.fact)
                event_rows.append(outcome.row)
                max_seen = max(max_seen, outcome.fact[0])
            else:
                result.counts["dead_lettered"] += 1
                dead.append(outcome.row)
        if dead:
            result.bundles.append({"deadletters": dead})
        self.journeys.observe(fact for facts in by_appointment.values() for fact in facts)
        emissions = self.journeys.process(self.journey_store, 0, by_appointment)
        emissions += self.journeys.fire(self.journey_store, 0)
        if event_rows:
            result.bundles.append({"events": event_rows})
        self._patients(emissions, result)
        return max_seen

    def _patients(self, emissions: list[Any], result: OfflineResult) -> None:
        updates: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for emission in emissions:
            result.bundles.append(emission.bundle)
            updates[emission.patient_update["patient_key"]].append(emission.patient_update)
        patient_emissions = self.patients.process(self.patient_store, 0, updates)
        patient_emissions += self.patients.fire(self.patient_store, 0)
        result.bundles.extend(emission.bundle for emission in patient_emissions)
        result.counts["journey_versions"] += len(emissions)
