"""The HL7 v2 source: SIU and ADT messages mapped to contract-v1 events.

Defaults (every path overridable in :class:`~sources.hl7.config.HL7SourceConfig`):

- SIU^S12 booked, S13 rescheduled, S14 rescheduled only if the start changed, S15/S17
  cancelled, S26 no-show; ADT^A10 arrived, A04 checked in, A03 checked out, A02/A08
  roomed when PV1-3.2 differs from the last known room, A08 provider.started when EVN-4
  says so; A11/A13 withdraw the check-in (and arrival) / the check-out.
- Repeated AIS/AIL/AIP groups: the first group is used (``AIS[2]-4`` reaches the second).

>>> source = HL7Source({"timezone": "America/New_York"})
>>> siu = ("MSH|^~\\\\&|EHR|NORTH|||20260302080000||SIU^S12^SIU_S12|M100|P|2.5\\r"
...        "SCH||APT-1||||||FOLLOWUP\\r"
...        "TQ1|||||||20260310093000|20260310100000\\r"
...        "PID|||MRN1^^^NORTH^MR\\rPV1||O|||||DR7|||cardiology\\rAIL|1||CARD^^^NORTH")
>>> event = source.map(siu)[0]
>>> event["event_type"], event["scheduled_start"], event["duration_min"], event["visit_type"]
('appointment.booked', '2026-03-10T09:30:00-04:00', 30, 'FOLLOWUP')
>>> event["event_id"], event["occurred_at"], event["site_id"], event["provider_id"]
('M100/appointment.booked', '2026-03-02T08:00:00-05:00', 'NORTH', 'DR7')
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from pydantic import BaseModel

from schemas.events import WITHDRAWN
from sources.base import EventDict, MappingError, Message, Prepared, Rejection, Source, checked
from sources.hl7.config import Action, HL7SourceConfig, StartEnd, ValueUnits
from sources.hl7.dtm import BadTimestamp, NoTimezone, parse_dtm
from sources.hl7.files import split_hl7
from sources.hl7.message import HL7ParseError, parse_message
from sources.hl7.message import Message as HL7Message
from sources.state import BoundedStore, Staged
from sources.timefmt import rfc3339

_UNITS: dict[str, float] = {
    **dict.fromkeys(("MIN", "MINS", "MINUTE", "MINUTES", "M"), 1.0),
    **dict.fromkeys(("H", "HR", "HRS", "HOUR", "HOURS"), 60.0),
    **dict.fromkeys(("S", "SEC", "SECS", "SECOND", "SECONDS"), 1 / 60),
    **dict.fromkeys(("D", "DAY", "DAYS"), 1440.0),
}


def event_id(message_id: str, event_type: str, suffix: str = "") -> str:
    """Deterministic from the message control id and the event type: a resent message dedupes.

    >>> event_id("M1", "patient.arrived")
    'M1/patient.arrived'
    >>> len(event_id("X" * 200, "patient.arrived"))
    44
    """
    text = f"{message_id}/{event_type}" + (f"/{suffix}" if suffix else "")
    if len(text) <= 128:
        return text
    return "hl7-" + hashlib.sha256(text.encode()).hexdigest()[:40]


class HL7Source(Source):
    """Maps one HL7 v2 message to contract events; keeps the last start and room per appointment."""

    config_model = HL7SourceConfig
    config: HL7SourceConfig

    def __init__(self, config: HL7SourceConfig | BaseModel | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.zone = self.config.zone()
        size = self.config.state_max_appointments
        self.starts: BoundedStore[datetime] = BoundedStore(size)
        self.rooms: BoundedStore[str] = BoundedStore(size)

    def split_messages(self, data: bytes) -> list[bytes]:
        """MLLP frames, or messages starting at each ``MSH|``."""
        return split_hl7(data)

    def prepare(self, message: Message) -> Prepared | Rejection:
        try:
            parsed = parse_message(message, self.config.encoding)
        except HL7ParseError as error:
            return Rejection("hl7_parse_error", "MSH", str(error))
        starts, rooms = self.starts.stage(), self.rooms.stage()
        try:
            events = _Mapping(self.config, self.zone, parsed, starts, rooms).events()
        except MappingError as error:
            return error.rejection

        def commit() -> None:
            starts.commit()
            rooms.commit()

        return Prepared(events, commit)


class _Mapping:
    """One message's mapping; raises :class:`MappingError` on the first problem."""

    def __init__(
        self, config: HL7SourceConfig, zone: ZoneInfo | None, msg: HL7Message,
        starts: Staged[datetime], rooms: Staged[str],
    ) -> None:
        self.config, self.zone, self.msg = config, zone, msg
        self.starts, self.rooms = starts, rooms
        self.used: dict[str, str] = {}  # contract field -> the HL7 path it came from

    # -- reading fields

    def optional(self, field: str, paths: list[str]) -> str | None:
        found = self.msg.first(paths)
        if found is None:
            return None
        self.used[field] = found[0]
        return found[1]

    def required(self, field: str, paths: list[str]) -> str:
        value = self.optional(field, paths)
        if value is None:
            raise MappingError("missing_field", paths[0], f"{field}: no value at {', '.join(paths)}")
        return value

    def time_at(self, path: str, value: str) -> datetime:
        try:
            return parse_dtm(value, self.zone)
        except NoTimezone as error:
            raise MappingError("no_timezone", path, f"{error}: set the source's `timezone` (an IANA name)") from None
        except BadTimestamp as error:
            raise MappingError("bad_timestamp", path, str(error)) from None

    def time(self, field: str, paths: list[str], required: bool = True) -> datetime | None:
        value = self.required(field, paths) if required else self.optional(field, paths)
        return None if value is None else self.time_at(self.used[field], value)

    def duration(self, required: bool) -> int | None:
        for rule in self.config.durations:
            if isinstance(rule, StartEnd):
                start, end = self.msg.get(rule.start), self.msg.get(rule.end)
                if not (start and end):
                    continue
                minutes = (self.time_at(rule.end, end) - self.time_at(rule.start, start)).total_seconds() / 60
                where = rule.end
            else:
                assert isinstance(rule, ValueUnits)
                value = self.msg.get(rule.value)
                if not value:
                    continue
                units = (self.msg.get(rule.units) or "MIN").upper()
                if units not in _UNITS:
                    raise MappingError("bad_value", rule.units, f"duration unit {units!r} is not one of MIN, HR, S, D")
                try:
                    minutes = float(value) * _UNITS[units]
                except ValueError:
                    raise MappingError("bad_value", rule.value, f"duration {value!r} is not a number") from None
                where = rule.value
            rounded = round(minutes)
            if rounded <= 0:
                raise MappingError("bad_value", where, f"duration_min: {minutes:g} minutes is not positive")
            return rounded
        if required:
            first = self.config.durations[0]
            path = first.end if isinstance(first, StartEnd) else first.value
            raise MappingError("missing_field", path, "duration_min: no duration (TQ1-7/8, AIS-7/8 or SCH-9/10)")
        return None

    # -- the message

    def kind(self) -> str:
        msg_type = self.msg.get("MSH-9.1").upper()
        trigger = self.msg.get("MSH-9.2").upper() or (self.msg.get("EVN-1").upper() if msg_type == "ADT" else "")
        if not msg_type:
            raise MappingError("missing_field", "MSH-9.1", "message type: no value")
        if not trigger:
            raise MappingError("missing_field", "MSH-9.2", "trigger event: no value")
        version = self.msg.get("MSH-12.1")
        if not version:
            raise MappingError("missing_field", "MSH-12.1", "version id: no value")
        if version not in self.config.versions:
            raise MappingError(
                "hl7_unsupported_version", "MSH-12.1",
                f"version {version!r} is not one of {', '.join(self.config.versions)}",
            )
        return f"{msg_type}^{trigger}"

    def envelope(self, kind: str) -> dict[str, Any]:
        fields = self.config.fields
        is_siu = kind.startswith("SIU^")
        if is_siu and not self.msg.has_segment("SCH"):
            raise MappingError("missing_field", "SCH", "an SIU message has an SCH segment")
        self.message_id = self.required("event_id", fields.message_id)
        occurred_at = self.time("occurred_at", fields.occurred_at)
        assert occurred_at is not None
        envelope: dict[str, Any] = {
            "schema_version": 1,
            "occurred_at": rfc3339(occurred_at),
            "source": self.config.name,
            "patient_id": self.required("patient_id", fields.patient_id),
            "appointment_id": self.required(
                "appointment_id", fields.appointment_id_siu if is_siu else fields.appointment_id_adt
            ),
            "site_id": self.required("site_id", fields.site_id),
            "department": self.required("department", fields.department),
        }
        provider = self.optional("provider_id", fields.provider_id)
        if provider is not None:
            envelope["provider_id"] = provider
        return envelope

    def events(self) -> list[EventDict]:
        kind = self.kind()
        withdrawn = self.config.withdrawals.get(kind)
        actions = self.config.triggers.get(kind)
        if withdrawn is None and actions is None:
            mapped = sorted({*self.config.triggers, *self.config.withdrawals})
            raise MappingError(
                "hl7_unsupported_event", "MSH-9", f"{kind} is not mapped by this source (mapped: {', '.join(mapped)})"
            )
        if actions == ["ignore"]:
            return []
        envelope = self.envelope(kind)
        out: list[EventDict] = []
        for event_type in withdrawn or []:
            out.append(self.event(envelope, WITHDRAWN, event_type, withdrawn_event_type=event_type))
        for action in actions or []:
            out.extend(self.act(action, envelope))
        return checked(out, lambda field: self.used.get(field, field))

    def event(self, envelope: dict[str, Any], event_type: str, suffix: str = "", **fields: Any) -> EventDict:
        body: EventDict = {"event_id": event_id(self.message_id, event_type, suffix), "event_type": event_type}
        body.update(envelope)
        body.update({k: v for k, v in fields.items() if v is not None})
        return body

    def act(self, action: Action, envelope: dict[str, Any]) -> list[EventDict]:
        fields, appointment = self.config.fields, envelope["appointment_id"]
        if action == "book":
            start = self.time("scheduled_start", fields.scheduled_start)
            assert start is not None
            self.starts.set(appointment, start)
            return [self.event(
                envelope, "appointment.booked", scheduled_start=rfc3339(start), duration_min=self.duration(True),
                visit_type=self.required("visit_type", fields.visit_type), modality=self.modality(),
            )]
        if action in ("reschedule", "modify"):
            start = self.time("scheduled_start", fields.scheduled_start, required=action == "reschedule")
            if start is None:
                return []
            before = self.starts.get(appointment)
            self.starts.set(appointment, start)
            if action == "modify" and (before is None or before == start):
                return []
            return [self.event(envelope, "appointment.rescheduled", scheduled_start=rfc3339(start),
                               duration_min=self.duration(False))]
        if action == "cancel":
            code = (self.optional("cancel_code", fields.cancel_code) or "").upper()
            patient_codes = {c.upper() for c in self.config.patient_cancel_codes}
            return [self.event(envelope, "appointment.cancelled",
                               cancelled_by="patient" if code in patient_codes else "clinic",
                               reason=self.optional("reason", fields.cancel_reason))]
        if action == "no_show":
            return [self.event(envelope, "appointment.no_show")]
        if action == "arrive":
            return [self.event(envelope, "patient.arrived")]
        if action == "check_in":
            return [self.event(envelope, "patient.checked_in", channel=self.config.checkin_channel)]
        if action == "check_out":
            return [self.event(envelope, "patient.checked_out")]
        if action == "room":
            room = self.optional("room", fields.room)
            if room is None or self.rooms.get(appointment) == room:
                return []
            self.rooms.set(appointment, room)
            return [self.event(envelope, "patient.roomed", room=room)]
        if action == "provider_start":
            rule = self.config.provider_start
            code = self.msg.get(rule.path).upper()
            if code not in {c.upper() for c in rule.codes}:
                return []
            if rule.require_provider and "provider_id" not in envelope:
                raise MappingError("missing_field", fields.provider_id[-1], "provider_id: a provider start names the provider")
            return [self.event(envelope, "provider.started")]
        assert action == "ignore"
        return []

    def modality(self) -> str:
        rule = self.config.telehealth
        codes = {c.upper() for c in rule.codes}
        for path in rule.paths:
            if self.msg.get(path).upper() in codes:
                return "telehealth"
        return "in_person"
