"""The HL7 source's configuration: every field path, code table and trigger is overridable.

Read from YAML (see ``sources/README.md``); unknown keys, bad paths, bad time zones and
unknown actions are rejected with the setting's name.

>>> config = HL7SourceConfig.model_validate({"timezone": "America/Chicago",
...                                          "fields": {"appointment_id_adt": ["PV1-50.1"]}})
>>> config.fields.appointment_id_adt, config.fields.appointment_id_siu
(['PV1-50.1'], ['SCH-2.1', 'SCH-1.1'])
>>> from pydantic import ValidationError
>>> try:
...     HL7SourceConfig.model_validate({"timezone": "Mars/Olympus"})
... except ValidationError as error:
...     print(error.errors()[0]["msg"])
Value error, 'Mars/Olympus' is not an IANA time zone
"""

from __future__ import annotations

import re
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from schemas.events import FAMILY_BY_TYPE, CheckinChannel
from sources.hl7.paths import check_path

Path = Annotated[str, AfterValidator(check_path)]
Paths = Annotated[list[Path], Field(min_length=1)]

Action = Literal[
    "book",  # appointment.booked
    "reschedule",  # appointment.rescheduled, always
    "modify",  # appointment.rescheduled only when the start changed (S14)
    "cancel",  # appointment.cancelled
    "no_show",  # appointment.no_show
    "arrive",  # patient.arrived
    "check_in",  # patient.checked_in
    "check_out",  # patient.checked_out
    "room",  # patient.roomed when the room differs from the last known one
    "provider_start",  # provider.started when the provider-start rule matches
    "ignore",  # acknowledged, maps to nothing
]
ACTIONS: tuple[str, ...] = Action.__args__  # type: ignore[attr-defined]

_TRIGGER = re.compile(r"^[A-Z0-9]{3}\^[A-Z0-9]{3}$")

DEFAULT_TRIGGERS: dict[str, list[Action]] = {
    "SIU^S12": ["book"],
    "SIU^S13": ["reschedule"],
    "SIU^S14": ["modify"],
    "SIU^S15": ["cancel"],
    "SIU^S17": ["cancel"],
    "SIU^S26": ["no_show"],
    "ADT^A10": ["arrive"],
    "ADT^A04": ["check_in"],
    "ADT^A03": ["check_out"],
    "ADT^A02": ["room"],
    "ADT^A08": ["room", "provider_start"],
}

DEFAULT_WITHDRAWALS: dict[str, list[str]] = {
    # A11 cancels the visit (admit/registration): its check-in and its arrival are void.
    "ADT^A11": ["patient.checked_in", "patient.arrived"],
    # A13 cancels the discharge: the check-out is void.
    "ADT^A13": ["patient.checked_out"],
}


class FieldPaths(BaseModel):
    """For each contract field, the HL7 paths tried in order; the first with a value wins."""

    model_config = ConfigDict(extra="forbid")

    appointment_id_siu: Paths = ["SCH-2.1", "SCH-1.1"]
    appointment_id_adt: Paths = ["PV1-19.1"]
    patient_id: Paths = ["PID-3.1"]
    provider_id: Paths = ["AIP-3.1", "PV1-7.1"]
    scheduled_start: Paths = ["TQ1-7", "SCH-11.4", "AIS-4"]
    occurred_at: Paths = ["EVN-2", "MSH-7"]
    site_id: Paths = ["AIL-3.4", "PV1-3.4", "MSH-4.1"]
    department: Paths = ["PV1-10", "AIL-3.1"]
    visit_type: Paths = ["AIS-3.1", "SCH-7.1", "SCH-8.1"]
    cancel_code: Paths = ["SCH-6.1"]
    cancel_reason: Paths = ["SCH-6.2", "SCH-6.1"]
    room: Paths = ["PV1-3.2"]
    message_id: Paths = ["MSH-10"]


class StartEnd(BaseModel):
    """A duration as the difference of two timestamps (TQ1-8 minus TQ1-7)."""

    model_config = ConfigDict(extra="forbid")
    start: Path
    end: Path


class ValueUnits(BaseModel):
    """A duration as a number and a unit code (AIS-7 with AIS-8); no unit means minutes."""

    model_config = ConfigDict(extra="forbid")
    value: Path
    units: Path


DEFAULT_DURATIONS: list[StartEnd | ValueUnits] = [
    StartEnd(start="TQ1-7", end="TQ1-8"),
    ValueUnits(value="AIS-7", units="AIS-8.1"),
    ValueUnits(value="SCH-9", units="SCH-10.1"),
]


class TelehealthRule(BaseModel):
    """The booking is telehealth when any of ``paths`` holds one of ``codes`` (case-insensitive)."""

    model_config = ConfigDict(extra="forbid")
    paths: list[Path] = ["SCH-8.1", "AIS-3.1", "SCH-7.1", "AIL-3.1"]
    codes: list[str] = ["TELEHEALTH", "VIRTUAL", "VIDEO", "TELE"]


class ProviderStartRule(BaseModel):
    """A ``provider_start`` message maps to provider.started when ``path`` holds one of ``codes``.

    Default: an A08 whose EVN-4 (event reason) is ``PS``/``PROVSTART``/``PROVIDER_STARTED`` and
    which names the provider (PV1-7.1 or AIP-3.1); ``occurred_at`` is the event time.
    """

    model_config = ConfigDict(extra="forbid")
    path: Path = "EVN-4.1"
    codes: list[str] = ["PS", "PROVSTART", "PROVIDER_STARTED"]
    require_provider: bool = True


class HL7SourceConfig(BaseModel):
    """Settings of one HL7 v2 source."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1)] = "hl7"
    timezone: str | None = None
    encoding: str = "utf-8"
    versions: list[str] = ["2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.7.1", "2.8", "2.8.1", "2.8.2"]
    fields: FieldPaths = FieldPaths()
    durations: list[StartEnd | ValueUnits] = Field(default_factory=lambda: list(DEFAULT_DURATIONS))
    triggers: dict[str, list[Action]] = Field(default_factory=lambda: dict(DEFAULT_TRIGGERS))
    withdrawals: dict[str, list[str]] = Field(default_factory=lambda: dict(DEFAULT_WITHDRAWALS))
    patient_cancel_codes: list[str] = ["PAT", "PATIENT", "P"]
    checkin_channel: CheckinChannel = "front_desk"
    telehealth: TelehealthRule = TelehealthRule()
    provider_start: ProviderStartRule = ProviderStartRule()
    state_max_appointments: Annotated[int, Field(gt=0)] = 100_000

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone") from None
        return value

    @field_validator("triggers", "withdrawals")
    @classmethod
    def _trigger_keys(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key in value:
            if not _TRIGGER.match(key):
                raise ValueError(f"{key!r} is not a message type and trigger like 'SIU^S12'")
        return value

    @field_validator("withdrawals")
    @classmethod
    def _withdrawn_types(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for key, types in value.items():
            for event_type in types:
                if event_type not in FAMILY_BY_TYPE:
                    raise ValueError(f"{key}: {event_type!r} is not a contract event type")
        return value

    def zone(self) -> ZoneInfo | None:
        return ZoneInfo(self.timezone) if self.timezone else None
