"""The FHIR source: Appointment and Encounter states turned into one event per transition.

A notification carries a resource's current state, so the source remembers per resource its
last version (``meta.versionId`` / ``meta.lastUpdated``), status, start, rooms and provider
start; an older (stale) or already seen version maps to nothing. A Bundle is all or
nothing: one bad entry rejects it and nothing of it is remembered.

>>> source = FHIRSource()
>>> appointment = {"resourceType": "Appointment", "id": "a1", "status": "arrived",
...     "meta": {"versionId": "2", "lastUpdated": "2026-03-10T09:12:00-05:00"},
...     "start": "2026-03-10T09:30:00-05:00", "end": "2026-03-10T10:00:00-05:00",
...     "serviceType": [{"coding": [{"code": "followup"}]}], "specialty": [{"coding": [{"code": "cardio"}]}],
...     "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
...                     {"actor": {"reference": "Location/north"}, "status": "accepted"}]}
>>> [e["event_type"] for e in source.map(appointment)]
['appointment.booked', 'patient.arrived']
>>> source.map({**appointment, "meta": {"versionId": "1", "lastUpdated": "2026-03-10T09:00:00-05:00"}})
[]
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel, ValidationError

from schemas.events import WITHDRAWN
from sources.base import EventDict, MappingError, Message, Prepared, Rejection, Source, checked
from sources.fhir.config import FHIRSourceConfig
from sources.fhir.paths import first, reference_id, select, values
from sources.state import BoundedStore, Staged
from sources.timefmt import rfc3339

APPOINTMENT_STATUSES = (
    "proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
    "entered-in-error", "checked-in", "waitlist",
)
ENCOUNTER_STATUSES = (
    "planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled", "entered-in-error", "unknown",
)
_NOT_YET_BOOKED = ("proposed", "pending", "waitlist", "entered-in-error")
_HERE = ("arrived", "checked-in")


@dataclass(frozen=True)
class Seen:
    """What the source remembers of one resource (and, for Appointments, its visit)."""

    last_updated: datetime | None = None
    version: str | None = None
    status: str | None = None
    start: datetime | None = None
    patient_id: str | None = None
    site_id: str | None = None
    department: str | None = None
    provider_id: str | None = None
    virtual: bool = False
    rooms: frozenset[str] = field(default_factory=frozenset)
    provider_started: bool = False


def _is_stale(old: Seen | None, last_updated: datetime | None, version: str | None) -> bool:
    """True when (last_updated, version) is not newer than what was seen."""
    if old is None or (old.last_updated is None and old.version is None):
        return False
    if old.last_updated is not None and last_updated is not None and old.last_updated != last_updated:
        return last_updated < old.last_updated
    if old.version is not None and version is not None:
        if old.version.isdigit() and version.isdigit():
            return int(version) <= int(old.version)
        return version == old.version
    return old.last_updated is not None and old.last_updated == last_updated


def event_id(resource: str, tag: str, event_type: str) -> str:
    """``Appointment/a1/3/patient.arrived``: resource, version (or fact time) and type.

    >>> event_id("Appointment/a1", "3", "patient.arrived")
    'Appointment/a1/3/patient.arrived'
    """
    text = f"{resource}/{tag}/{event_type}"
    return text if len(text) <= 128 else "fhir-" + hashlib.sha256(text.encode()).hexdigest()[:40]


class FHIRSource(Source):
    """Maps a FHIR resource, or a Bundle of them, given as JSON bytes/str or a dict."""

    config_model = FHIRSourceConfig
    config: FHIRSourceConfig

    def __init__(self, config: FHIRSourceConfig | BaseModel | Mapping[str, Any] | None = None) -> None:
        super().__init__(config)
        self.seen: BoundedStore[Seen] = BoundedStore(self.config.state_max_resources)

    def split_messages(self, data: bytes) -> list[bytes]:
        """A JSON file is one message; an NDJSON file (one resource per line) is one per line."""
        text = data.strip()
        if not text:
            return []
        try:
            orjson.loads(text)
            return [text]
        except orjson.JSONDecodeError:
            return [line for line in text.splitlines() if line.strip()]

    def prepare(self, message: Message | dict[str, Any]) -> Prepared | Rejection:  # type: ignore[override]
        if isinstance(message, dict):
            resource = message
        else:
            try:
                resource = orjson.loads(message)
            except orjson.JSONDecodeError as error:
                return Rejection("fhir_parse_error", "", f"not JSON: {error}")
        if not isinstance(resource, dict) or not isinstance(resource.get("resourceType"), str):
            return Rejection("fhir_parse_error", "resourceType", "a FHIR resource is a JSON object with resourceType")
        state = self.seen.stage()
        try:
            events = checked(_Mapping(self.config, state).message(resource))
        except MappingError as error:
            return error.rejection
        return Prepared(events, state.commit)


def _validate(resource: dict[str, Any], where: str) -> None:
    from fhir.resources.R4B.appointment import Appointment
    from fhir.resources.R4B.encounter import Encounter

    model: Any = {"Appointment": Appointment, "Encounter": Encounter}[resource["resourceType"]]
    try:
        model.model_validate(resource)
    except ValidationError as error:
        first_error = error.errors(include_url=False)[0]
        loc = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in first_error["loc"]).replace(".[", "[")
        loc = loc.replace("class_fhir", "class")
        raise MappingError("fhir_invalid_resource", f"{where}.{loc}" if loc else where,
                           first_error["msg"].removeprefix("Value error, ")) from None


class _Mapping:
    def __init__(self, config: FHIRSourceConfig, state: Staged[Seen]) -> None:
        self.config, self.state = config, state

    def message(self, resource: dict[str, Any]) -> list[EventDict]:
        kind = resource["resourceType"]
        if kind == "Bundle":
            return self.bundle(resource)
        if kind not in ("Appointment", "Encounter"):
            raise MappingError("fhir_unsupported_resource", "resourceType", f"{kind} is not Appointment, Encounter or Bundle")
        return self.resource(resource, kind)

    def bundle(self, bundle: dict[str, Any]) -> list[EventDict]:
        entries = bundle.get("entry") or []
        if not isinstance(entries, list):
            raise MappingError("fhir_invalid_resource", "Bundle.entry", "entry is a list")
        out: list[EventDict] = []
        for index, entry in enumerate(entries):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue  # id-only notifications and deletions carry no state to map
            kind = resource.get("resourceType")
            if kind in ("Appointment", "Encounter"):
                out.extend(self.resource(resource, f"Bundle.entry[{index}].resource"))
            # SubscriptionStatus / Parameters (the notification's status) and other types: skipped
        return out

    # -- shared helpers

    def when(self, value: str | None, where: str) -> datetime | None:
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise MappingError("bad_timestamp", where, f"{value!r} is not a FHIR dateTime") from None
        if moment.tzinfo is None:
            raise MappingError("bad_timestamp", where, f"{value!r} has no UTC offset")
        return moment

    def meta(self, resource: dict[str, Any], where: str) -> tuple[datetime | None, str | None]:
        meta = resource.get("meta") or {}
        return self.when(meta.get("lastUpdated"), f"{where}.meta.lastUpdated"), meta.get("versionId")

    def resource(self, resource: dict[str, Any], where: str) -> list[EventDict]:
        kind = resource["resourceType"]
        _validate(resource, where)
        rid = resource.get("id")
        if not rid:
            raise MappingError("missing_field", f"{where}.id", f"{kind}.id: a notified resource has an id")
        last_updated, version = self.meta(resource, where)
        key = f"{kind}/{rid}"
        old = self.state.get(key)
        if _is_stale(old, last_updated, version):
            return []
        tag = version or (last_updated.strftime("%Y%m%dT%H%M%S%z") if last_updated else "-")
        if kind == "Appointment":
            return self.appointment(resource, where, key, tag, old, last_updated, version)
        return self.encounter(resource, where, key, tag, old, last_updated, version)

    def occurred(self, last_updated: datetime | None, fallback: str | None, where: str, fallback_name: str) -> datetime:
        if last_updated is not None:
            return last_updated
        if self.config.occurred_at_fallback == "resource_time":
            moment = self.when(fallback, f"{where}.{fallback_name}")
            if moment is not None:
                return moment
        raise MappingError("missing_field", f"{where}.meta.lastUpdated", "occurred_at: no meta.lastUpdated")

    def event(self, base: dict[str, Any], event_type: str, key: str, tag: str, at: datetime, **fields: Any) -> EventDict:
        suffix = fields.get("withdrawn_event_type", "")
        body: EventDict = {
            "event_id": event_id(key, tag, event_type + (f"/{suffix}" if suffix else "")),
            "event_type": event_type,
            "schema_version": 1,
            "occurred_at": rfc3339(at),
            "source": self.config.name,
            **base,
        }
        body.update({k: v for k, v in fields.items() if v is not None})
        return body

    def required(self, resource: dict[str, Any], paths: list[str], where: str, name: str, fallback: str | None) -> str:
        found = first(resource, paths)
        if found is not None:
            return found[1]
        if fallback is not None:
            return fallback
        raise MappingError("missing_field", f"{where}.{paths[0]}", f"{name}: no value at {', '.join(paths)}")

    # -- Appointment

    def appointment_id(self, resource: dict[str, Any], where: str) -> str:
        if self.config.appointment_id == "id":
            return str(resource["id"])
        for identifier in resource.get("identifier") or []:
            if self.config.identifier_system in (None, identifier.get("system")) and identifier.get("value"):
                return str(identifier["value"])
        raise MappingError("missing_field", f"{where}.identifier", f"no identifier of system {self.config.identifier_system}")

    def appointment(
        self, resource: dict[str, Any], where: str, key: str, tag: str, old: Seen | None,
        last_updated: datetime | None, version: str | None,
    ) -> list[EventDict]:
        paths = self.config.appointment
        status = resource.get("status")
        if status not in APPOINTMENT_STATUSES:
            raise MappingError("fhir_invalid_resource", f"{where}.status", f"{status!r} is not an Appointment status")
        appointment = self.appointment_id(resource, where)
        visit = self.state.get(f"visit/{appointment}")
        patient = select(resource, "participant.actor.reference(Patient)")
        if patient is None:
            raise MappingError("missing_field", f"{where}.participant.actor", "patient_id: no Patient participant")
        base: dict[str, Any] = {
            "patient_id": patient,
            "appointment_id": appointment,
            "site_id": self.required(resource, paths.site_id, where, "site_id", (visit.site_id if visit else None)),
            "department": self.required(resource, paths.department, where, "department", (visit.department if visit else None)),
        }
        provider = select(resource, "participant.actor.reference(Practitioner)")
        if provider is not None:
            base["provider_id"] = provider
        at = self.occurred(last_updated, resource.get("created"), where, "created")
        start = self.when(resource.get("start"), f"{where}.start")
        out: list[EventDict] = []
        before = old.status if old else None
        if status not in _NOT_YET_BOOKED and (old is None or old.start is None):
            if start is None:
                raise MappingError("missing_field", f"{where}.start", "scheduled_start: a booked Appointment has a start")
            booked_at = self.when(resource.get("created"), f"{where}.created") or at
            codes = {c.lower() for c in self.config.telehealth_codes}
            virtual = (visit is not None and visit.virtual) or any(
                str(v).lower() in codes for p in paths.telehealth for v in values(resource, p)
            )
            out.append(self.event(
                base, "appointment.booked", key, tag, booked_at, scheduled_start=rfc3339(start),
                duration_min=self.duration(resource, start, where, required=True),
                visit_type=self.required(resource, paths.visit_type, where, "visit_type", None),
                modality="telehealth" if virtual else "in_person",
            ))
        elif old is not None and old.start is not None and start is not None and start != old.start \
                and status not in ("cancelled", "noshow", "entered-in-error"):
            out.append(self.event(base, "appointment.rescheduled", key, tag, at, scheduled_start=rfc3339(start),
                                  duration_min=self.duration(resource, start, where, required=False)))
        if status != before:
            out.extend(self.appointment_status(resource, base, key, tag, at, status, before))
        known_start = start if status not in _NOT_YET_BOOKED else (old.start if old else None)
        self.state.set(key, Seen(last_updated, version, status, known_start or (old.start if old else None)))
        self.state.set(f"visit/{appointment}", replace(visit or Seen(), patient_id=patient, site_id=base["site_id"],
                                                       department=base["department"], provider_id=provider))
        return out

    def appointment_status(
        self, resource: dict[str, Any], base: dict[str, Any], key: str, tag: str, at: datetime,
        status: str, before: str | None,
    ) -> list[EventDict]:
        paths = self.config.appointment
        if status == "arrived":
            return [self.event(base, "patient.arrived", key, tag, at)]
        if status == "checked-in":
            return [self.event(base, "patient.checked_in", key, tag, at, channel=self.config.checkin_channel)]
        if status == "fulfilled" and self.config.fulfilled_checks_out:
            return [self.event(base, "patient.checked_out", key, tag, at)]
        if status == "cancelled":
            code = (select(resource, paths.cancel_code[0]) or "").lower()
            by_patient = any(code == p.lower() or code.startswith(p.lower() + "-") for p in self.config.patient_cancel_prefixes)
            reason = first(resource, paths.cancel_reason)
            return [self.event(base, "appointment.cancelled", key, tag, at,
                               cancelled_by="patient" if by_patient else "clinic", reason=reason and reason[1])]
        if status == "noshow":
            return [self.event(base, "appointment.no_show", key, tag, at)]
        if status in ("booked", "pending") and before in _HERE:
            # The check-in was undone: withdraw it (and the arrival).
            return [self.event(base, WITHDRAWN, key, tag, at, withdrawn_event_type=t)
                    for t in ("patient.checked_in", "patient.arrived")]
        return []

    def duration(self, resource: dict[str, Any], start: datetime, where: str, required: bool) -> int | None:
        minutes: float | None = None
        end = self.when(resource.get("end"), f"{where}.end")
        if end is not None:
            minutes = (end - start).total_seconds() / 60
            path = f"{where}.end"
        elif resource.get("minutesDuration") is not None:
            minutes, path = float(resource["minutesDuration"]), f"{where}.minutesDuration"
        if minutes is None:
            if required:
                raise MappingError("missing_field", f"{where}.end", "duration_min: no end or minutesDuration")
            return None
        if round(minutes) <= 0:
            raise MappingError("bad_value", path, f"duration_min: {minutes:g} minutes is not positive")
        return round(minutes)

    # -- Encounter

    def encounter(
        self, resource: dict[str, Any], where: str, key: str, tag: str, old: Seen | None,
        last_updated: datetime | None, version: str | None,
    ) -> list[EventDict]:
        status = resource.get("status")
        if status not in ENCOUNTER_STATUSES:
            raise MappingError("fhir_invalid_resource", f"{where}.status", f"{status!r} is not an Encounter status")
        reference = select(resource, "appointment.reference")
        if reference is None:
            raise MappingError("missing_field", f"{where}.appointment", "appointment_id: no Encounter.appointment reference")
        appointment = reference_id(reference)
        visit = self.state.get(f"visit/{appointment}")
        patient = select(resource, "subject.reference(Patient)") or ((visit.patient_id if visit else None))
        if patient is None:
            raise MappingError("missing_field", f"{where}.subject", "patient_id: no Patient subject")
        paths = self.config.encounter
        base: dict[str, Any] = {
            "patient_id": patient,
            "appointment_id": appointment,
            "site_id": self.required(resource, paths.site_id, where, "site_id", (visit.site_id if visit else None)),
            "department": self.required(resource, paths.department, where, "department", (visit.department if visit else None)),
        }
        practitioners = [
            p for p in resource.get("participant") or []
            if select(p, "individual.reference(Practitioner)") is not None
        ]
        provider = (select(practitioners[0], "individual.reference(Practitioner)") if practitioners
                    else ((visit.provider_id if visit else None)))
        if provider:
            base["provider_id"] = provider
        at = self.occurred(last_updated, select(resource, "period.start"), where, "period.start")
        virtual = select(resource, "class.code") in set(self.config.virtual_classes)
        before = old.status if old else None
        out: list[EventDict] = []
        rooms = set(old.rooms) if old else set()
        provider_started = bool(old and old.provider_started)
        if status == "entered-in-error":
            if before != status:
                out.extend(self.event(base, WITHDRAWN, key, tag, at, withdrawn_event_type=t)
                           for t in self.config.encounter_error_withdraws)
        else:
            if status == "arrived" and before != status:
                arrived = self.status_time(resource, "arrived", where) or at
                out.append(self.event(base, "patient.arrived", key, tag, arrived))
            if not virtual:
                out.extend(self.roomings(resource, base, key, where, rooms))
            if not provider_started:
                started = self.provider_start(practitioners, where)
                if started is not None:
                    who, when = started
                    out.append(self.event({**base, "provider_id": who}, "provider.started", key, "p", when))
                    provider_started = True
            if status == "finished" and before != status and self.config.finished_checks_out:
                ended = self.when(select(resource, "period.end"), f"{where}.period.end") or at
                out.append(self.event(base, "patient.checked_out", key, tag, ended))
        self.state.set(key, Seen(last_updated, version, status, rooms=frozenset(rooms), provider_started=provider_started))
        self.state.set(f"visit/{appointment}", replace(visit or Seen(), patient_id=patient, site_id=base["site_id"],
                                                       department=base["department"], virtual=virtual or bool((visit.virtual if visit else None))))
        return out

    def status_time(self, resource: dict[str, Any], status: str, where: str) -> datetime | None:
        for index, entry in enumerate(resource.get("statusHistory") or []):
            if entry.get("status") == status:
                return self.when((entry.get("period") or {}).get("start"), f"{where}.statusHistory[{index}].period.start")
        return None

    def roomings(self, resource: dict[str, Any], base: dict[str, Any], key: str, where: str, rooms: set[str]) -> list[EventDict]:
        out: list[EventDict] = []
        room_types = {t.lower() for t in self.config.room_physical_types}
        for index, entry in enumerate(resource.get("location") or []):
            kinds = {str(c).lower() for c in values(entry, "physicalType.coding.code")}
            if kinds and not kinds & room_types:
                continue
            start = self.when((entry.get("period") or {}).get("start"), f"{where}.location[{index}].period.start")
            reference = select(entry, "location.reference")
            if start is None or reference is None:
                continue
            room = select(entry, "location.display") or reference_id(reference)
            fact = f"{reference_id(reference)}@{rfc3339(start)}"
            if fact in rooms:
                continue
            rooms.add(fact)
            out.append(self.event(base, "patient.roomed", key, f"room-{fact}", start, room=room))
        return out

    def provider_start(self, practitioners: list[dict[str, Any]], where: str) -> tuple[str, datetime] | None:
        starts: list[tuple[datetime, str]] = []
        for participant in practitioners:
            moment = self.when((participant.get("period") or {}).get("start"), f"{where}.participant.period.start")
            if moment is not None:
                starts.append((moment, select(participant, "individual.reference(Practitioner)") or ""))
        if not starts:
            return None
        moment, who = min(starts)
        return who, moment
