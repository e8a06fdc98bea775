"""HL7 v2 source: hand-written SIU/ADT messages (HL7 v2.3 to v2.8 chapter 10 and 3 layouts).

Every emitted event is checked against contract v1 (``schemas.decode``), withdrawals
against the local ``event.withdrawn`` check.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest

from schemas.decode import Rejected, decode
from sources import Rejection, load_source
from sources.hl7 import HL7Source
from sources.hl7.message import normalize, parse_message
from sources.hl7.mllp import frame

NY = "America/New_York"


def valid(events: list[dict]) -> list[dict]:
    """Assert every event passes the contract (withdrawals included: schemas.events.EventWithdrawn)."""
    for event in events:
        verdict = decode(orjson.dumps(event))
        assert not isinstance(verdict, Rejected), (verdict, event)
    return events


def hl7(*segments: str, end: str = "\r") -> str:
    return end.join(segments) + end


def mapped(source: HL7Source, message: str | bytes) -> list[dict]:
    result = source.map(message)
    assert not isinstance(result, Rejection), result
    return valid(result)


def rejected(source: HL7Source, message: str | bytes) -> Rejection:
    result = source.map(message)
    assert isinstance(result, Rejection), result
    return result


# -- SIU: a v2.5 booking with every group present -------------------------------------

S12_V25 = hl7(
    r"MSH|^~\&|EPIC|NORTHCLINIC|JOURNEYS|JRN|20260302081500-0500||SIU^S12^SIU_S12|MSG00001|P|2.5|||AL|NE",
    r"SCH|PL-77^EPIC|APT-1001^EPIC|||||ROUTINE^Routine visit^HL70276|NORMAL^Normal^HL70277|30|MIN|^^30^20260310093000-0500||||||||||||||Booked",
    r"TQ1|1||||||20260310093000-0500|20260310100000-0500",
    r"PID|1||MRN0042^^^NORTH^MR~99-123^^^SSA^SS||Doe^Jane||19800101|F",
    r"PV1|1|O|CARDIO^^^NORTHCLINIC||||DR100^Smith^Anna|||CARDIOLOGY",
    r"RGS|1|A",
    r"AIS|1|A|NEWPT^New patient visit^LOCAL|20260310093000-0500|||30|MIN",
    r"AIL|1|A|CARDIO^RM12^^NORTHCLINIC",
    r"AIP|1|A|DR100^Smith^Anna|ATTENDING",
)


def test_s12_maps_to_booked_with_exact_fields() -> None:
    [event] = mapped(HL7Source({"name": "hl7-siu"}), S12_V25)
    assert event == {
        "event_id": "MSG00001/appointment.booked",
        "event_type": "appointment.booked",
        "schema_version": 1,
        "occurred_at": "2026-03-02T08:15:00-05:00",
        "source": "hl7-siu",
        "patient_id": "MRN0042",
        "appointment_id": "APT-1001",
        "site_id": "NORTHCLINIC",
        "department": "CARDIOLOGY",
        "provider_id": "DR100",
        "scheduled_start": "2026-03-10T09:30:00-05:00",
        "duration_min": 30,
        "visit_type": "NEWPT",
        "modality": "in_person",
    }


def test_resent_message_gives_the_same_event_ids() -> None:
    source = HL7Source()
    assert mapped(source, S12_V25) == mapped(source, S12_V25)


def test_mllp_framed_bytes_and_newline_line_ends() -> None:
    framed = frame(S12_V25.replace("\r", "\n").encode())
    [event] = mapped(HL7Source(), framed)
    assert event["appointment_id"] == "APT-1001"
    [crlf] = mapped(HL7Source(), S12_V25.replace("\r", "\r\n"))
    assert crlf == event


# -- SIU v2.3: no TQ1, no offsets, SCH-11 timing, placer id only, EVN-less --------------

S12_V23_NAIVE = hl7(
    r"MSH|^~\&|CADENCE|SOUTH|JRN|JRN|202603020816||SIU^S12|C-9|P|2.3",
    r"SCH|PL-88||||||FOLLOWUP^Follow-up||45|MIN|^^45^202603101400",
    r"PID|||MRN0043||Roe^Rick",
    r"AIL|1||PEDS^^^SOUTH",
    end="\n",
)


def test_times_without_offset_take_the_configured_zone() -> None:
    [event] = mapped(HL7Source({"timezone": NY}), S12_V23_NAIVE)
    assert event["appointment_id"] == "PL-88"  # SCH-2 empty: the placer id
    assert event["occurred_at"] == "2026-03-02T08:16:00-05:00"
    assert event["scheduled_start"] == "2026-03-10T14:00:00-04:00"  # after the DST change
    assert (event["duration_min"], event["visit_type"], event["site_id"], event["department"]) == (
        45, "FOLLOWUP", "SOUTH", "PEDS",
    )
    assert "provider_id" not in event


def test_time_without_offset_and_no_zone_is_rejected() -> None:
    verdict = rejected(HL7Source(), S12_V23_NAIVE)
    assert (verdict.reason, verdict.path) == ("no_timezone", "MSH-7")
    assert "timezone" in verdict.detail


def test_bad_timestamp_names_the_field() -> None:
    message = S12_V25.replace("TQ1|1||||||20260310093000-0500", "TQ1|1||||||2026031X")
    verdict = rejected(HL7Source(), message)
    assert (verdict.reason, verdict.path) == ("bad_timestamp", "TQ1-7")


def test_repeated_ais_ail_aip_groups_take_the_first() -> None:
    message = hl7(
        r"MSH|^~\&|EHR|EAST|JRN|JRN|20260302090000+0100||SIU^S12^SIU_S12|M-3|P|2.6",
        r"SCH||APT-3",
        r"PID|||MRN7",
        r"RGS|1",
        r"AIS|1||ECHO^Echocardiogram|20260311080000+0100|||1.5|HR",
        r"AIS|2||LAB^Blood draw|20260311100000+0100|||15|MIN",
        r"AIL|1||IMAGING^^^EASTHOSP",
        r"AIL|2||LAB^^^EASTLAB",
        r"AIP|1||DR1^One",
        r"AIP|2||DR2^Two",
    )
    [event] = mapped(HL7Source(), message)
    assert (event["visit_type"], event["scheduled_start"], event["duration_min"]) == (
        "ECHO", "2026-03-11T08:00:00+01:00", 90,
    )
    assert (event["site_id"], event["department"], event["provider_id"]) == ("EASTHOSP", "IMAGING", "DR1")
    second = HL7Source({"fields": {"provider_id": ["AIP[2]-3.1"]}})
    assert mapped(second, message)[0]["provider_id"] == "DR2"


def test_telehealth_booking_from_appointment_type() -> None:
    message = S12_V25.replace("NORMAL^Normal^HL70277", "TELEHEALTH^Video visit")
    assert mapped(HL7Source(), message)[0]["modality"] == "telehealth"


def test_duration_in_seconds_and_a_bad_unit() -> None:
    no_tq1 = "\r".join(s for s in S12_V25.split("\r") if not s.startswith("TQ1"))
    seconds = no_tq1.replace("|||30|MIN", "|||2700|S")
    assert mapped(HL7Source(), seconds)[0]["duration_min"] == 45
    verdict = rejected(HL7Source(), no_tq1.replace("|||30|MIN", "|||30|FORTNIGHT"))
    assert (verdict.reason, verdict.path) == ("bad_value", "AIS-8.1")


# -- SIU modifications, cancellations, no-shows -----------------------------------------


def siu(trigger: str, control_id: str, start: str = "20260310093000-0500", reason: str = "", sent: str = "20260303120000-0500") -> str:
    return hl7(
        rf"MSH|^~\&|EHR|NORTH|JRN|JRN|{sent}||SIU^{trigger}^SIU_S12|{control_id}|P|2.5.1",
        rf"SCH||APT-1001||||{reason}||NORMAL",
        rf"TQ1|1||||||{start}|",
        r"PID|||MRN0042",
        r"PV1||O|CARDIO^^^NORTHCLINIC|||||||CARDIOLOGY",
        r"AIS|1||NEWPT||||30|MIN",
    )


def test_s13_is_a_reschedule() -> None:
    [event] = mapped(HL7Source(), siu("S13", "M2", start="20260312110000-0500"))
    assert event["event_type"] == "appointment.rescheduled"
    assert (event["scheduled_start"], event["duration_min"], event["event_id"]) == (
        "2026-03-12T11:00:00-05:00", 30, "M2/appointment.rescheduled",
    )


def test_s14_without_a_start_change_maps_to_nothing() -> None:
    source = HL7Source()
    mapped(source, S12_V25)
    assert source.map(siu("S14", "M3")) == []  # same instant as booked
    same_instant = siu("S14", "M4", start="20260310143000+0000")
    assert source.map(same_instant) == []
    [moved] = mapped(source, siu("S14", "M5", start="20260310100000-0500"))
    assert (moved["event_type"], moved["scheduled_start"]) == ("appointment.rescheduled", "2026-03-10T10:00:00-05:00")
    assert source.map(siu("S14", "M6", start="20260310100000-0500")) == []


def test_s14_for_an_unknown_appointment_is_remembered_not_emitted() -> None:
    source = HL7Source()
    assert source.map(siu("S14", "M7")) == []
    assert mapped(source, siu("S14", "M8", start="20260311090000-0500"))[0]["event_type"] == "appointment.rescheduled"


def test_prepare_changes_no_state_until_commit() -> None:
    source = HL7Source()
    mapped(source, S12_V25)
    prepared = source.prepare(siu("S14", "M9", start="20260310100000-0500"))
    assert not isinstance(prepared, Rejection) and len(prepared.events) == 1
    again = source.prepare(siu("S14", "M9", start="20260310100000-0500"))  # a retry after a failed publish
    assert not isinstance(again, Rejection) and again.events == prepared.events
    again.commit()
    assert source.map(siu("S14", "M10", start="20260310100000-0500")) == []


def test_cancellations_by_patient_and_clinic_with_escaped_reason() -> None:
    source = HL7Source()
    [by_patient] = mapped(source, siu("S15", "M11", reason="PAT^Patient\\T\\family \\F\\ travel\\X21\\"))
    assert (by_patient["event_type"], by_patient["cancelled_by"], by_patient["reason"]) == (
        "appointment.cancelled", "patient", "Patient&family | travel!",
    )
    [by_clinic] = mapped(source, siu("S17", "M12", reason=r"DOC^Provider ill\.br\see note"))
    assert (by_clinic["cancelled_by"], by_clinic["reason"]) == ("clinic", "Provider ill\nsee note")
    [no_reason] = mapped(source, siu("S15", "M13"))
    assert no_reason["cancelled_by"] == "clinic" and "reason" not in no_reason
    custom = HL7Source({"patient_cancel_codes": ["PT-REQ"]})
    assert mapped(custom, siu("S15", "M14", reason="PT-REQ"))[0]["cancelled_by"] == "patient"


def test_s26_is_a_no_show() -> None:
    [event] = mapped(HL7Source(), siu("S26", "M15"))
    assert (event["event_type"], event["occurred_at"]) == ("appointment.no_show", "2026-03-03T12:00:00-05:00")


# -- ADT --------------------------------------------------------------------------------


def adt(trigger: str, control_id: str, recorded: str, room: str = "", reason: str = "", visit: str = "V5001") -> str:
    return hl7(
        rf"MSH|^~\&|EPIC|NORTHCLINIC|JRN|JRN|20260310120000-0500||ADT^{trigger}^ADT_A01|{control_id}|P|2.8",
        rf"EVN|{trigger}|{recorded}||{reason}",
        r"PID|1||MRN0042^^^NORTH^MR||Doe^Jane",
        rf"PV1|1|O|CARDIO^{room}^^NORTHCLINIC||||DR100^Smith^Anna|||CARDIOLOGY|||||||||{visit}",
    )


def test_adt_arrival_check_in_check_out() -> None:
    source = HL7Source({"name": "hl7-adt"})
    [arrived] = mapped(source, adt("A10", "A-1", "20260310091000-0500"))
    assert arrived == {
        "event_id": "A-1/patient.arrived",
        "event_type": "patient.arrived",
        "schema_version": 1,
        "occurred_at": "2026-03-10T09:10:00-05:00",  # EVN-2, not MSH-7
        "source": "hl7-adt",
        "patient_id": "MRN0042",
        "appointment_id": "V5001",
        "site_id": "NORTHCLINIC",
        "department": "CARDIOLOGY",
        "provider_id": "DR100",
    }
    [checked_in] = mapped(source, adt("A04", "A-2", "20260310091200-0500"))
    assert (checked_in["event_type"], checked_in["channel"]) == ("patient.checked_in", "front_desk")
    [out] = mapped(source, adt("A03", "A-3", "20260310104000-0500"))
    assert (out["event_type"], out["occurred_at"]) == ("patient.checked_out", "2026-03-10T10:40:00-05:00")
    kiosk = HL7Source({"checkin_channel": "kiosk"})
    assert mapped(kiosk, adt("A04", "A-4", "20260310091200-0500"))[0]["channel"] == "kiosk"


def test_rooming_only_when_the_room_changes() -> None:
    source = HL7Source()
    assert source.map(adt("A08", "R-0", "20260310091500-0500")) == []  # no room yet
    [roomed] = mapped(source, adt("A08", "R-1", "20260310092000-0500", room="RM12"))
    assert (roomed["event_type"], roomed["room"], roomed["occurred_at"]) == (
        "patient.roomed", "RM12", "2026-03-10T09:20:00-05:00",
    )
    assert source.map(adt("A08", "R-2", "20260310092500-0500", room="RM12")) == []
    [moved] = mapped(source, adt("A02", "R-3", "20260310093000-0500", room="RM14"))
    assert moved["room"] == "RM14"


def test_provider_start_from_an_a08_with_the_configured_reason() -> None:
    source = HL7Source()
    events = mapped(source, adt("A08", "P-1", "20260310093500-0500", room="RM12", reason="PS"))
    assert [e["event_type"] for e in events] == ["patient.roomed", "provider.started"]
    assert events[1]["provider_id"] == "DR100" and events[1]["event_id"] == "P-1/provider.started"
    custom = HL7Source({"provider_start": {"path": "ZVS-1", "codes": ["START"]}, "triggers": {"ADT^A08": ["provider_start"]}})
    message = adt("A08", "P-2", "20260310093500-0500") + "ZVS|START\r"
    assert [e["event_type"] for e in mapped(custom, message)] == ["provider.started"]


def test_a11_before_the_check_in_it_cancels() -> None:
    """The correction arrives first; its withdrawal still covers the later-arriving fact."""
    source = HL7Source()
    withdrawals = mapped(source, adt("A11", "C-1", "20260310091500-0500"))
    checked_in = mapped(source, adt("A04", "A-2", "20260310091200-0500"))[0]
    assert [(w["event_type"], w["withdrawn_event_type"], w["event_id"]) for w in withdrawals] == [
        ("event.withdrawn", "patient.checked_in", "C-1/event.withdrawn/patient.checked_in"),
        ("event.withdrawn", "patient.arrived", "C-1/event.withdrawn/patient.arrived"),
    ]
    assert all(w["appointment_id"] == checked_in["appointment_id"] for w in withdrawals)
    assert checked_in["occurred_at"] <= withdrawals[0]["occurred_at"]  # same offset: text order is time order


def test_a13_withdraws_the_check_out() -> None:
    [withdrawal] = mapped(HL7Source(), adt("A13", "C-2", "20260310110000-0500"))
    assert withdrawal["withdrawn_event_type"] == "patient.checked_out"
    assert withdrawal["occurred_at"] == "2026-03-10T11:00:00-05:00"


# -- what does not map --------------------------------------------------------------------


def test_unsupported_message_types() -> None:
    for kind in ("ADT^A31", "ORU^R01"):
        message = S12_V25.replace("SIU^S12^SIU_S12", kind)
        verdict = rejected(HL7Source(), message)
        assert (verdict.reason, verdict.path) == ("hl7_unsupported_event", "MSH-9")
        assert kind in verdict.detail
    ignoring = HL7Source({"triggers": {"ADT^A31": ["ignore"]}})
    assert ignoring.map(S12_V25.replace("SIU^S12^SIU_S12", "ADT^A31")) == []


def test_unsupported_version_and_garbage() -> None:
    verdict = rejected(HL7Source(), S12_V25.replace("|P|2.5|", "|P|2.2|"))
    assert (verdict.reason, verdict.path) == ("hl7_unsupported_version", "MSH-12.1")
    assert rejected(HL7Source(), b"PID|||x\r").reason == "hl7_parse_error"
    assert rejected(HL7Source(), b"\xff\xfeMSH").reason == "hl7_parse_error"


def test_missing_segments() -> None:
    no_sch = "\r".join(s for s in S12_V25.split("\r") if not s.startswith("SCH"))
    assert (rejected(HL7Source(), no_sch).reason, rejected(HL7Source(), no_sch).path) == ("missing_field", "SCH")
    no_pid = "\r".join(s for s in S12_V25.split("\r") if not s.startswith("PID"))
    verdict = rejected(HL7Source(), no_pid)
    assert (verdict.reason, verdict.path) == ("missing_field", "PID-3.1")
    no_pv1 = "\r".join(s for s in adt("A04", "X", "20260310091200-0500").split("\r") if not s.startswith("PV1"))
    verdict = rejected(HL7Source(), no_pv1)
    assert (verdict.reason, verdict.path) == ("missing_field", "PV1-19.1")
    no_times = "\r".join(
        s for s in S12_V25.split("\r") if not s.startswith(("TQ1", "AIS"))
    ).replace("|^^30^20260310093000-0500|", "||")
    verdict = rejected(HL7Source(), no_times)
    assert (verdict.reason, verdict.path) == ("missing_field", "TQ1-7")


# -- configuration ------------------------------------------------------------------------


def test_paths_overridden_in_yaml(tmp_path: Path) -> None:
    config = tmp_path / "adt.yaml"
    config.write_text(
        "name: hl7-adt-east\n"
        "timezone: Europe/Paris\n"
        "fields:\n"
        "  appointment_id_adt: [PV1-50.1, PV1-19.1]\n"
        "  occurred_at: [EVN-6, EVN-2, MSH-7]\n"
        "  department: [PV1-3.1]\n"
    )
    source = load_source("hl7", config)
    message = hl7(
        r"MSH|^~\&|EHR|EAST|JRN|JRN|20260310090000||ADT^A10|E-1|P|2.7",
        r"EVN||20260310090100||||20260310085500",
        r"PID|||MRN9",
        r"PV1|1|O|ONCO^^^EAST" + "|" * 47 + "ALT-77",
    )
    [event] = mapped(source, message)
    assert (event["source"], event["appointment_id"], event["occurred_at"], event["department"]) == (
        "hl7-adt-east", "ALT-77", "2026-03-10T08:55:00+01:00", "ONCO",
    )


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"fields": {"patient_id": ["PID.3"]}}, "fields.patient_id.0"),
        ({"timezone": "Nowhere/Else"}, "timezone"),
        ({"triggers": {"SIU^S12": ["teleport"]}}, "triggers.SIU^S12.0"),
        ({"withdrawals": {"ADT^A11": ["patient.vanished"]}}, "withdrawals"),
        ({"colour": "blue"}, "colour"),
    ],
)
def test_bad_configuration_names_the_setting(config: dict, named: str) -> None:
    with pytest.raises(ValueError, match=re.escape(named)):
        HL7Source(config)


def test_normalize_and_paths() -> None:
    assert normalize(b"\x0bMSH|a\r\nPID|b\n\nPV1|c\x1c\r") == "MSH|a\rPID|b\rPV1|c"
    msg = parse_message(S12_V25)
    assert msg.get("PID-3[2].1") == "99-123"
    assert msg.get("PID-3.4") == "NORTH"
    assert msg.get("MSH-2") == "^~\\&"
    assert msg.get("AIS[2]-3") == ""
