"""Contract-v1 events rendered back as the messages hospitals send: HL7 v2 (SIU/ADT) or FHIR R4.

For end-to-end tests: a simulated day rendered as HL7 + FHIR and mapped back by the sources
must equal the same day as contract JSON (``event_id`` and ``source`` aside). Render in
``occurred_at`` order per appointment: FHIR notifications carry state, and the FHIR source
ignores an older version.

What cannot be carried (``HL7_CANNOT_CARRY`` / ``FHIR_CANNOT_CARRY``): every ``wait.*`` and
telehealth session event, ``appointment.reminder_sent``, ``patient.left_without_being_seen``,
and ``patient.roomed`` without a room (HL7: rooming is a room change). A check-in channel
round-trips only as the source's configured channel; ``event.withdrawn`` is not rendered.

>>> booked = {"event_id": "e1", "event_type": "appointment.booked", "schema_version": 1,
...     "occurred_at": "2026-03-02T08:00:00-05:00", "source": "sim", "patient_id": "p1",
...     "appointment_id": "A1", "site_id": "north", "department": "cardiology", "provider_id": "d1",
...     "scheduled_start": "2026-03-10T09:30:00-05:00", "duration_min": 30,
...     "visit_type": "followup", "modality": "in_person"}
>>> print(render_hl7(booked).decode().replace("\\r", "\\n"))  # doctest: +ELLIPSIS
MSH|^~\\&|JOURNEYS|north|||20260302080000-0500||SIU^S12^SIU_S12|...|P|2.8
SCH||A1||||||NORMAL|30|MIN
TQ1|1||||||20260310093000-0500|20260310100000-0500
PID|1||p1
PV1|1|O|^^^north||||d1|||cardiology
AIS|1||followup
AIL|1||^^^north
AIP|1||d1
<BLANKLINE>
"""

from __future__ import annotations

import copy
import hashlib
from datetime import datetime, timedelta
from typing import Any

from schemas.events import FAMILY_BY_TYPE
from sources.hl7.ack import escape
from sources.hl7.dtm import format_dtm

HL7_TRIGGERS: dict[str, str] = {
    "appointment.booked": "SIU^S12^SIU_S12",
    "appointment.rescheduled": "SIU^S13^SIU_S12",
    "appointment.cancelled": "SIU^S15^SIU_S12",
    "appointment.no_show": "SIU^S26^SIU_S12",
    "patient.arrived": "ADT^A10^ADT_A09",
    "patient.checked_in": "ADT^A04^ADT_A01",
    "patient.roomed": "ADT^A02^ADT_A02",
    "provider.started": "ADT^A08^ADT_A01",
    "patient.checked_out": "ADT^A03^ADT_A03",
}
FHIR_TYPES = frozenset({
    "appointment.booked", "appointment.rescheduled", "appointment.cancelled", "appointment.no_show",
    "patient.arrived", "patient.checked_in", "patient.roomed", "provider.started", "patient.checked_out",
})
HL7_CANNOT_CARRY = frozenset(FAMILY_BY_TYPE) - frozenset(HL7_TRIGGERS)
FHIR_CANNOT_CARRY = frozenset(FAMILY_BY_TYPE) - FHIR_TYPES


def hl7_carries(event: dict[str, Any]) -> bool:
    """Whether :func:`render_hl7` can carry ``event`` (so a feed can split a stream on it)."""
    return event["event_type"] in HL7_TRIGGERS and (event["event_type"] != "patient.roomed" or bool(event.get("room")))


def fhir_carries(event: dict[str, Any]) -> bool:
    """Whether :meth:`FHIRRenderer.render` can carry ``event``."""
    return event["event_type"] in FHIR_TYPES


def _dtm(text: str) -> str:
    return format_dtm(datetime.fromisoformat(text))


def render_hl7(event: dict[str, Any], version: str = "2.8") -> bytes:
    """One HL7 v2 message (``\\r`` segment ends, no MLLP frame) carrying ``event``."""
    event_type = event["event_type"]
    if not hl7_carries(event):
        if event_type == "patient.roomed":
            raise ValueError("HL7 v2 rooming is a room change: a patient.roomed without room cannot be carried")
        raise ValueError(f"HL7 v2 cannot carry {event_type}")
    e = {k: escape(v) if isinstance(v, str) else v for k, v in event.items()}
    control = hashlib.sha1(event["event_id"].encode()).hexdigest()[:20]
    site, provider = e["site_id"], e.get("provider_id", "")
    occurred = _dtm(event["occurred_at"])
    segments = [f"MSH|^~\\&|JOURNEYS|{site}|||{occurred}||{HL7_TRIGGERS[event_type]}|{control}|P|{version}"]
    if event_type.startswith("appointment."):
        reason = ""
        if event_type == "appointment.cancelled":
            reason = ("PAT" if event["cancelled_by"] == "patient" else "CLINIC") + (f"^{e['reason']}" if e.get("reason") else "")
        kind = "TELEHEALTH" if event.get("modality") == "telehealth" else "NORMAL"
        duration = event.get("duration_min")
        segments.append(f"SCH||{e['appointment_id']}||||{reason}||{kind}|{duration or ''}|{'MIN' if duration else ''}".rstrip("|"))
        if "scheduled_start" in event:
            start = datetime.fromisoformat(event["scheduled_start"])
            end = format_dtm(start + timedelta(minutes=duration)) if duration and event_type == "appointment.booked" else ""
            segments.append(f"TQ1|1||||||{format_dtm(start)}|{end}".rstrip("|"))
        segments.append(f"PID|1||{e['patient_id']}")
        segments.append(f"PV1|1|O|^^^{site}||||{provider}|||{e['department']}")
        if event_type == "appointment.booked":
            segments.append(f"AIS|1||{e['visit_type']}")
        segments.append(f"AIL|1||^^^{site}")
        if provider:
            segments.append(f"AIP|1||{provider}")
    else:
        trigger = HL7_TRIGGERS[event_type].split("^")[1]
        reason = "PS" if event_type == "provider.started" else ""
        segments.append(f"EVN|{trigger}|{occurred}||{reason}".rstrip("|"))
        segments.append(f"PID|1||{e['patient_id']}")
        room = e.get("room", "") if event_type == "patient.roomed" else ""
        segments.append(f"PV1|1|O|^{room}^^{site}||||{provider}|||{e['department']}|||||||||{e['appointment_id']}")
    return ("\r".join(segments) + "\r").encode()


class FHIRRenderer:
    """Renders events as Appointment / Encounter notifications, keeping each resource's state.

    >>> renderer = FHIRRenderer()
    >>> booked = {"event_id": "e1", "event_type": "appointment.booked", "schema_version": 1,
    ...     "occurred_at": "2026-03-02T08:00:00-05:00", "source": "sim", "patient_id": "p1",
    ...     "appointment_id": "A1", "site_id": "north", "department": "cardiology",
    ...     "scheduled_start": "2026-03-10T09:30:00-05:00", "duration_min": 30,
    ...     "visit_type": "followup", "modality": "in_person"}
    >>> resource = renderer.render(booked)
    >>> resource["resourceType"], resource["status"], resource["meta"]["versionId"], resource["end"]
    ('Appointment', 'booked', '1', '2026-03-10T10:00:00-05:00')
    """

    def __init__(self) -> None:
        self.appointments: dict[str, dict[str, Any]] = {}
        self.encounters: dict[str, dict[str, Any]] = {}

    @staticmethod
    def _bump(resource: dict[str, Any], at: str) -> dict[str, Any]:
        version = int(resource.get("meta", {}).get("versionId", "0")) + 1
        resource["meta"] = {"versionId": str(version), "lastUpdated": at}
        return copy.deepcopy(resource)

    def render(self, event: dict[str, Any]) -> dict[str, Any]:
        event_type, appointment_id, at = event["event_type"], event["appointment_id"], event["occurred_at"]
        if not fhir_carries(event):
            raise ValueError(f"FHIR Appointment/Encounter cannot carry {event_type}")
        if event_type in ("patient.roomed", "provider.started"):
            return self._bump(self._encounter(event), at)
        resource = self.appointments.get(appointment_id)
        if resource is None:
            resource = self.appointments[appointment_id] = {
                "resourceType": "Appointment", "id": appointment_id, "status": "booked",
                "specialty": [{"coding": [{"code": event["department"]}]}],
                "participant": [
                    {"actor": {"reference": f"Patient/{event['patient_id']}"}, "status": "accepted"},
                    {"actor": {"reference": f"Location/{event['site_id']}"}, "status": "accepted"},
                ],
            }
            if event.get("provider_id"):
                resource["participant"].append({"actor": {"reference": f"Practitioner/{event['provider_id']}"}, "status": "accepted"})
        if event_type in ("appointment.booked", "appointment.rescheduled"):
            start = datetime.fromisoformat(event["scheduled_start"])
            minutes = event.get("duration_min") or resource.get("minutesDuration")
            resource["start"] = event["scheduled_start"]
            resource.pop("end", None)
            if minutes:
                resource["minutesDuration"] = minutes
                resource["end"] = (start + timedelta(minutes=minutes)).isoformat()
            if event_type == "appointment.booked":
                resource["created"] = at
                resource["appointmentType"] = {"coding": [{"code": event["visit_type"]}]}
                codings = [{"code": event["visit_type"]}]
                if event["modality"] == "telehealth":
                    codings.append({"code": "virtual"})
                resource["serviceType"] = [{"coding": codings}]
        status = {
            "appointment.cancelled": "cancelled", "appointment.no_show": "noshow", "patient.arrived": "arrived",
            "patient.checked_in": "checked-in", "patient.checked_out": "fulfilled",
        }.get(event_type)
        if status:
            resource["status"] = status
        if event_type == "appointment.cancelled":
            code = "pat" if event["cancelled_by"] == "patient" else "prov"
            resource["cancelationReason"] = {"coding": [{"code": code}], **({"text": event["reason"]} if event.get("reason") else {})}
        return self._bump(resource, at)

    def _encounter(self, event: dict[str, Any]) -> dict[str, Any]:
        appointment_id = event["appointment_id"]
        resource = self.encounters.setdefault(appointment_id, {
            "resourceType": "Encounter", "id": f"enc-{appointment_id}", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": f"Patient/{event['patient_id']}"},
            "appointment": [{"reference": f"Appointment/{appointment_id}"}],
            "serviceProvider": {"reference": f"Organization/{event['site_id']}"},
            "serviceType": {"coding": [{"code": event["department"]}]},
            "participant": [], "location": [],
        })
        if event["event_type"] == "patient.roomed":
            room = event.get("room") or "room"
            resource["location"].append({
                "location": {"reference": f"Location/{room}", "display": room} if event.get("room") else {"reference": "Location/room"},
                "physicalType": {"coding": [{"code": "ro"}]}, "period": {"start": event["occurred_at"]},
            })
        else:
            resource["participant"].append({
                "individual": {"reference": f"Practitioner/{event.get('provider_id', 'unknown')}"},
                "period": {"start": event["occurred_at"]},
            })
        return resource
