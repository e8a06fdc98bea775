"""Wire events (contract v1) from the model's facts.

Each source writes timestamps its own way: the EHR's HL7 feed in whole seconds, the
telehealth platform in UTC (``Z``), everything else in the site's local offset with
milliseconds. Event ids follow each source's style and are unique per source.

>>> import itertools, random
>>> from simulator.config import SimulationConfig
>>> from simulator.world import build_world
>>> from simulator.model import simulate_day
>>> config = SimulationConfig(seed=2, sites=1, days=1, volume=4)
>>> visit = simulate_day(build_world(config), config, 0, itertools.count(1))[0]
>>> events = Emitter(random.Random(0)).events(visit)
>>> events[0][1]["event_type"], events[0][1]["schema_version"]
('appointment.booked', 1)
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

from simulator.clock import rfc3339
from simulator.model import TELEHEALTH_SOURCE, Visit

EventDict = dict[str, Any]
Emitted = tuple[int, EventDict]  # (occurred_at ms, event)


class Emitter:
    """Turns visits into event dicts; ``rng`` draws event ids and cosmetic choices only.

    ``serial`` numbers events across the whole run (one emitter per day shares it), so
    ids stay unique per source even where they are sequential.
    """

    def __init__(self, rng: random.Random, serial: Iterator[int] | None = None) -> None:
        self.rng = rng
        self.serial = serial if serial is not None else itertools.count(1)

    def event_id(self, source: str) -> str:
        n, bits = next(self.serial), self.rng.getrandbits
        if source == "hl7-siu":
            return f"MSG{n:012d}"  # HL7 message control ids are sequential
        if source == "kiosk":
            h = f"{bits(128):032x}"
            return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"
        if source == "cadence":
            return f"cad-{n:x}{bits(32):08x}"
        if source == "rtls":
            return f"rtls-{n}"
        if source == "mobile-app":
            return f"mob_{bits(96):024x}"
        if source == TELEHEALTH_SOURCE:
            return f"th_{bits(96):024x}"
        return f"q{n:x}-{bits(32):08x}"

    def events(self, visit: Visit) -> list[Emitted]:
        """Every event of ``visit`` (in no particular order)."""
        rng = self.rng
        site = visit.site
        tz: ZoneInfo = site.tz
        ehr = site.ehr_source
        out: list[Emitted] = []
        base = {
            "patient_id": visit.patient_id,
            "appointment_id": visit.appointment_id,
            "site_id": site.site_id,
            "department": visit.department,
        }

        def event(event_type: str, at: int, source: str, provider: bool = True, **fields: Any) -> EventDict:
            if source == "hl7-siu":
                assert at % 1000 == 0, "HL7 facts are whole seconds"
                stamp = rfc3339(at, tz, millis=False)
            elif source == TELEHEALTH_SOURCE:
                stamp = rfc3339(at, None)
            else:
                stamp = rfc3339(at, tz)
            body: EventDict = {
                "event_id": self.event_id(source),
                "event_type": event_type,
                "schema_version": 1,
                "occurred_at": stamp,
                "source": source,
                **base,
            }
            if provider:
                body["provider_id"] = visit.provider_id
            for key, value in fields.items():
                if value is not None:
                    body[key] = value
            out.append((at, body))
            return body

        # -- scheduling
        booked = event(
            "appointment.booked", visit.booked_at, ehr,
            scheduled_start=rfc3339(visit.booked_start, tz, millis=False),
            duration_min=visit.booked_duration, visit_type=visit.visit_type, modality=visit.modality,
        )
        if visit.booking_channel is not None:
            booked["attributes"] = {"booking_channel": visit.booking_channel}
        for change in visit.reschedules:
            event("appointment.rescheduled", change.at, ehr,
                  scheduled_start=rfc3339(change.start, tz, millis=False), duration_min=change.duration)
        if visit.cancel is not None:
            event("appointment.cancelled", visit.cancel.at, ehr,
                  cancelled_by=visit.cancel.by, reason=visit.cancel.reason)
        for reminder in visit.reminders:
            # The reminder service does not always know the provider (optional field).
            sent = event("appointment.reminder_sent", reminder.at, ehr, provider=rng.random() < 0.5,
                         channel=reminder.channel)
            if rng.random() < 0.3:
                sent["attributes"] = {"template": f"{reminder.channel}_v2"}
        if visit.no_show_at is not None:
            event("appointment.no_show", visit.no_show_at, ehr)

        # -- check-in
        for report in visit.arrived:
            event("patient.arrived", report.at, report.source, provider=report.source not in ("rtls", "kiosk"))
        for report in visit.checked_in:
            checked = event("patient.checked_in", report.at, report.source, channel=report.value)
            if report.source == "kiosk" and rng.random() < 0.5:
                checked["attributes"] = {"kiosk_id": f"K{rng.randint(1, 6)}", "copay_collected": rng.random() < 0.6}
        for report in visit.roomed:
            event("patient.roomed", report.at, ehr, room=report.value if rng.random() < 0.9 else None)
        if visit.provider_started is not None:
            event("provider.started", visit.provider_started, ehr)
        if visit.left_without_being_seen is not None:
            event("patient.left_without_being_seen", visit.left_without_being_seen, ehr)
        if visit.checked_out is not None:
            event("patient.checked_out", visit.checked_out, ehr)

        # -- queues
        for wait in visit.waits:
            event("wait.started", wait.started, wait.source, queue=wait.queue)
            for at, told in wait.estimates:
                event("wait.estimate_published", at, wait.source, queue=wait.queue,
                      estimated_wait_min=int(told) if float(told).is_integer() else told)
            if wait.ended is not None:
                event("wait.ended", wait.ended, wait.source, queue=wait.queue, outcome=wait.outcome)

        # -- telehealth
        if visit.session_created is not None:
            event("session.created", visit.session_created, TELEHEALTH_SOURCE)
        for presence in visit.presence:
            if presence.joined:
                event("participant.joined", presence.at, TELEHEALTH_SOURCE, role=presence.role)
            else:
                event("participant.left", presence.at, TELEHEALTH_SOURCE, role=presence.role, reason=presence.reason)
        for issue in visit.issues:
            raised = event("connection.issue", issue.at, TELEHEALTH_SOURCE, role=issue.role, kind=issue.kind,
                           severity=issue.severity)
            if rng.random() < 0.3:
                raised["attributes"] = {"packet_loss_pct": round(rng.uniform(1, 25), 1)}
        if visit.session_ended is not None:
            event("session.ended", visit.session_ended, TELEHEALTH_SOURCE)
        return out
