"""Settings -> the pure journey core: one place that knows both.

The core (``journey/``) takes plain values and never reads configuration; the worker,
the offline pipeline's users and the benchmarks build their parts here.

>>> from runtime.config import load_settings
>>> offline_pipeline(load_settings()).run([b"{"]).counts["dead_lettered"]
1
"""

from __future__ import annotations

from journey.friction import load_rules
from journey.ingest import Edge
from journey.metrics import JourneyPolicy
from journey.offline import OfflinePipeline
from journey.processor import JourneyProcessor
from journey.pseudonym import Pseudonymizer
from runtime.config import Settings
from schemas.timestamps import DAY_MS, MINUTE_MS


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
        retention_ms=round(settings.journey_retention_days * DAY_MS),
        idle_after_s=settings.watermark_idle_s,
    )


def edge_from(settings: Settings) -> Edge:
    return Edge(Pseudonymizer(settings.pseudonym_secret), settings.topics, settings.attributes_allowlist,
                max_future_skew_ms=round(settings.max_future_skew_min * MINUTE_MS),
                max_message_bytes=settings.max_message_kb * 1024)


def too_late_ms(settings: Settings) -> int:
    return round(settings.too_late_after_days * DAY_MS)


def offline_pipeline(settings: Settings) -> OfflinePipeline:
    """The reference pipeline (no broker) with these settings."""
    return OfflinePipeline(edge_from(settings), journey_processor_from(settings), settings.batch_size,
                           too_late_ms=too_late_ms(settings))
