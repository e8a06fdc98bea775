"""FHIR R4 source and server: hand-written Appointment / Encounter resources and Bundles."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web

from sources import Rejection
from sources.fhir import FHIRSource
from sources.fhir.server import make_app
from tests.test_sources_hl7 import valid


def appointment(status: str = "booked", version: str = "1", updated: str = "2026-03-02T08:00:00-05:00", **extra: Any) -> dict:
    body = {
        "resourceType": "Appointment",
        "id": "appt-1",
        "meta": {"versionId": version, "lastUpdated": updated},
        "identifier": [{"system": "urn:ehr:appointments", "value": "EHR-77"}],
        "status": status,
        "serviceType": [{"coding": [{"system": "http://example.org/visit-types", "code": "followup"}]}],
        "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": "cardiology"}]}],
        "start": "2026-03-10T09:30:00-05:00",
        "end": "2026-03-10T10:00:00-05:00",
        "created": "2026-03-01T16:20:00-05:00",
        "participant": [
            {"actor": {"reference": "Patient/pat-9", "display": "Jane Doe"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/dr-100"}, "status": "accepted"},
            {"actor": {"reference": "Location/north-clinic"}, "status": "accepted"},
        ],
    }
    body.update(extra)
    return body


def encounter(status: str = "in-progress", version: str = "1", updated: str = "2026-03-10T09:40:00-05:00", **extra: Any) -> dict:
    body = {
        "resourceType": "Encounter",
        "id": "enc-1",
        "meta": {"versionId": version, "lastUpdated": updated},
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/pat-9"},
        "appointment": [{"reference": "Appointment/appt-1"}],
        "statusHistory": [{"status": "arrived", "period": {"start": "2026-03-10T09:10:00-05:00"}}],
        "participant": [{"individual": {"reference": "Practitioner/dr-100"}, "period": {"start": "2026-03-10T09:45:00-05:00"}}],
        "location": [
            {"location": {"reference": "Location/lobby"}, "physicalType": {"coding": [{"code": "wa"}]},
             "period": {"start": "2026-03-10T09:10:00-05:00", "end": "2026-03-10T09:25:00-05:00"}},
            {"location": {"reference": "Location/rm-12", "display": "Room 12"}, "physicalType": {"coding": [{"code": "ro"}]},
             "period": {"start": "2026-03-10T09:25:00-05:00"}},
        ],
        "period": {"start": "2026-03-10T09:10:00-05:00"},
    }
    body.update(extra)
    return body


def mapped(source: FHIRSource, message: Any) -> list[dict]:
    result = source.map(orjson.dumps(message) if isinstance(message, dict) else message)
    assert not isinstance(result, Rejection), result
    return valid(result)


def types(events: list[dict]) -> list[str]:
    return [e["event_type"] for e in events]


def test_booked_appointment_exact_fields() -> None:
    [event] = mapped(FHIRSource({"name": "ehr-fhir"}), appointment())
    assert event == {
        "event_id": "Appointment/appt-1/1/appointment.booked",
        "event_type": "appointment.booked",
        "schema_version": 1,
        "occurred_at": "2026-03-01T16:20:00-05:00",  # the booking time (created)
        "source": "ehr-fhir",
        "patient_id": "pat-9",
        "appointment_id": "appt-1",
        "site_id": "north-clinic",
        "department": "cardiology",
        "provider_id": "dr-100",
        "scheduled_start": "2026-03-10T09:30:00-05:00",
        "duration_min": 30,
        "visit_type": "followup",
        "modality": "in_person",
    }


def test_transitions_once_each_and_stale_versions_ignored() -> None:
    source = FHIRSource()
    mapped(source, appointment())
    assert mapped(source, appointment()) == []  # the same version again
    [moved] = mapped(source, appointment(version="2", updated="2026-03-03T10:00:00-05:00",
                                         start="2026-03-10T11:00:00-05:00", end="2026-03-10T11:20:00-05:00"))
    assert (moved["event_type"], moved["scheduled_start"], moved["duration_min"], moved["occurred_at"]) == (
        "appointment.rescheduled", "2026-03-10T11:00:00-05:00", 20, "2026-03-03T10:00:00-05:00",
    )
    assert mapped(source, appointment(version="1", updated="2026-03-02T08:00:00-05:00")) == []  # stale
    arrived = appointment("arrived", "3", "2026-03-10T10:50:00-05:00", start="2026-03-10T11:00:00-05:00")
    assert types(mapped(source, arrived)) == ["patient.arrived"]
    checked_in = {**arrived, "status": "checked-in", "meta": {"versionId": "4", "lastUpdated": "2026-03-10T10:52:00-05:00"}}
    [event] = mapped(source, checked_in)
    assert (event["event_type"], event["channel"], event["occurred_at"]) == (
        "patient.checked_in", "front_desk", "2026-03-10T10:52:00-05:00",
    )
    fulfilled = {**checked_in, "status": "fulfilled", "meta": {"versionId": "5", "lastUpdated": "2026-03-10T11:30:00-05:00"}}
    assert types(mapped(source, fulfilled)) == ["patient.checked_out"]


def test_cancelled_by_patient_and_no_show() -> None:
    source = FHIRSource()
    mapped(source, appointment())
    cancelled = appointment("cancelled", "2", "2026-03-05T12:00:00-05:00", cancelationReason={
        "coding": [{"system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason", "code": "pat-mv"}],
        "text": "Patient moved away"})
    [event] = mapped(source, cancelled)
    assert (event["event_type"], event["cancelled_by"], event["reason"]) == ("appointment.cancelled", "patient", "Patient moved away")
    other = FHIRSource()
    [booked, no_show] = mapped(other, appointment("noshow", "7", "2026-03-10T10:15:00-05:00"))
    assert types([booked, no_show]) == ["appointment.booked", "appointment.no_show"]
    clinic = FHIRSource()
    mapped(clinic, appointment())
    event = mapped(clinic, appointment("cancelled", "2", cancelationReason={"coding": [{"code": "prov"}]}))[0]
    assert (event["cancelled_by"], event["reason"]) == ("clinic", "prov")


def test_undone_check_in_withdraws_it() -> None:
    source = FHIRSource()
    mapped(source, appointment("checked-in", "1", "2026-03-10T09:12:00-05:00"))
    undone = mapped(source, appointment("booked", "2", "2026-03-10T09:14:00-05:00"))
    assert [(e["event_type"], e["withdrawn_event_type"]) for e in undone] == [
        ("event.withdrawn", "patient.checked_in"), ("event.withdrawn", "patient.arrived"),
    ]
    assert undone[0]["occurred_at"] == "2026-03-10T09:14:00-05:00"


def test_encounter_rooming_provider_start_and_check_out() -> None:
    source = FHIRSource()
    mapped(source, appointment())
    events = mapped(source, encounter("arrived"))
    assert types(events) == ["patient.arrived", "patient.roomed", "provider.started"]
    arrived, roomed, started = events
    assert arrived["occurred_at"] == "2026-03-10T09:10:00-05:00"  # statusHistory, not lastUpdated
    assert (roomed["room"], roomed["occurred_at"], roomed["site_id"], roomed["department"]) == (
        "Room 12", "2026-03-10T09:25:00-05:00", "north-clinic", "cardiology",  # site/department from the Appointment
    )
    assert (started["provider_id"], started["occurred_at"]) == ("dr-100", "2026-03-10T09:45:00-05:00")
    assert mapped(source, encounter("in-progress", "2", "2026-03-10T09:50:00-05:00")) == []
    finished = encounter("finished", "3", "2026-03-10T10:31:00-05:00",
                         period={"start": "2026-03-10T09:10:00-05:00", "end": "2026-03-10T10:30:00-05:00"})
    [out] = mapped(source, finished)
    assert (out["event_type"], out["occurred_at"]) == ("patient.checked_out", "2026-03-10T10:30:00-05:00")


def test_virtual_encounter_is_telehealth_and_not_roomed() -> None:
    source = FHIRSource()
    virtual = encounter("planned", "1", "2026-03-01T12:00:00-05:00",
                        **{"class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "VR"}})
    virtual["participant"] = []
    virtual["serviceProvider"] = {"reference": "Organization/north"}
    virtual["serviceType"] = {"coding": [{"code": "cardiology"}]}
    assert mapped(source, virtual) == []
    [booked] = mapped(source, appointment())
    assert booked["modality"] == "telehealth"


def test_subscription_notification_bundles() -> None:
    r4b = {
        "resourceType": "Bundle", "type": "subscription-notification",
        "entry": [
            {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "SubscriptionStatus", "status": "active", "type": "event-notification",
                                                    "subscription": {"reference": "Subscription/s1"}}},
            {"fullUrl": "https://ehr/fhir/Appointment/appt-1", "resource": appointment()},
        ],
    }
    assert types(mapped(FHIRSource(), r4b)) == ["appointment.booked"]
    backport = {
        "resourceType": "Bundle", "type": "history",
        "entry": [
            {"resource": {"resourceType": "Parameters", "parameter": [{"name": "subscription", "valueReference": {"reference": "Subscription/s1"}}]}},
            {"resource": appointment()},
            {"resource": encounter("arrived")},
            {"fullUrl": "https://ehr/fhir/Patient/pat-9"},  # id-only entry: nothing to map
        ],
    }
    assert types(mapped(FHIRSource(), backport)) == [
        "appointment.booked", "patient.arrived", "patient.roomed", "provider.started",
    ]


def test_a_bad_entry_rejects_the_whole_bundle_and_nothing_is_remembered() -> None:
    source = FHIRSource()
    bad = appointment(id="appt-2")
    bad["start"] = "2026-03-10T09:30:00"  # an instant has an offset
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": appointment()}, {"resource": bad}]}
    verdict = source.map(orjson.dumps(bundle))
    assert isinstance(verdict, Rejection)
    assert (verdict.reason, verdict.path) == ("fhir_invalid_resource", "Bundle.entry[1].resource.start")
    assert len(source.seen) == 0


@pytest.mark.parametrize(
    ("resource", "reason", "path"),
    [
        ({**appointment(), "start": "tomorrow"}, "fhir_invalid_resource", "Appointment.start"),
        ({**appointment(), "status": "happening"}, "fhir_invalid_resource", "Appointment.status"),
        ({**appointment(), "participant": [{"actor": {"reference": "Location/x"}, "status": "accepted"}]},
         "missing_field", "Appointment.participant.actor"),
        ({**encounter(), "appointment": []}, "missing_field", "Encounter.appointment"),
        ({"resourceType": "Patient", "id": "p"}, "fhir_unsupported_resource", "resourceType"),
    ],
)
def test_rejections_name_the_element(resource: dict, reason: str, path: str) -> None:
    verdict = FHIRSource().map(orjson.dumps(resource))
    assert isinstance(verdict, Rejection)
    assert (verdict.reason, verdict.path) == (reason, path)


def test_not_json() -> None:
    assert FHIRSource().map(b"{oops").reason == "fhir_parse_error"  # type: ignore[union-attr]


def test_appointment_id_from_an_identifier() -> None:
    source = FHIRSource({"appointment_id": "identifier", "identifier_system": "urn:ehr:appointments"})
    assert mapped(source, appointment())[0]["appointment_id"] == "EHR-77"


# -- the HTTP handler -----------------------------------------------------------------------


def test_server_answers_after_publish_and_outcomes_on_errors() -> None:
    async def scenario() -> None:
        published: list[list[dict]] = []
        failing = {"on": False}

        async def publish(events: list[dict], raw: bytes) -> None:
            if failing["on"]:
                raise ConnectionError("broker down")
            published.append(events)

        runner = web.AppRunner(make_app(FHIRSource(), publish))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        base = f"http://127.0.0.1:{port}"
        try:
            async with ClientSession() as http:
                failing["on"] = True
                async with http.put(f"{base}/Appointment/appt-1", data=orjson.dumps(appointment())) as response:
                    assert response.status == 503
                failing["on"] = False
                async with http.put(f"{base}/Appointment/appt-1", data=orjson.dumps(appointment())) as response:
                    assert response.status == 200
                assert types(published[0]) == ["appointment.booked"]  # the failed try remembered nothing
                bad = copy.deepcopy(appointment("booked", "2"))
                del bad["start"]
                bad["status"] = "cancelled-ish"
                async with http.post(f"{base}/", data=orjson.dumps(bad)) as response:
                    assert response.status == 422
                    outcome = await response.json(content_type=None)
                assert outcome["resourceType"] == "OperationOutcome"
                assert outcome["issue"][0]["expression"] == ["Appointment.status"]
                async with http.post(f"{base}/", data=b"nope") as response:
                    assert response.status == 400
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
