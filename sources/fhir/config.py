"""The FHIR source's configuration (YAML-friendly; unknown keys rejected).

>>> FHIRSourceConfig.model_validate({"appointment_id": "identifier",
...                                  "identifier_system": "urn:ehr:appt"}).appointment_id
'identifier'
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.events import FAMILY_BY_TYPE, CheckinChannel

Paths = Annotated[list[Annotated[str, Field(min_length=1)]], Field(min_length=1)]


class AppointmentPaths(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: Paths = ["participant.actor.reference(Location)"]
    department: Paths = ["specialty.coding.code", "serviceCategory.coding.code"]
    visit_type: Paths = ["appointmentType.coding.code", "serviceType.coding.code"]
    cancel_code: Paths = ["cancelationReason.coding.code"]
    cancel_reason: Paths = ["cancelationReason.text", "cancelationReason.coding.display", "cancelationReason.coding.code"]
    telehealth: Paths = ["appointmentType.coding.code", "serviceType.coding.code"]


class EncounterPaths(BaseModel):
    model_config = ConfigDict(extra="forbid")
    site_id: Paths = ["serviceProvider.reference(Organization)"]
    department: Paths = ["serviceType.coding.code"]


class FHIRSourceConfig(BaseModel):
    """Settings of one FHIR source."""

    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, Field(min_length=1)] = "fhir"
    appointment_id: Literal["id", "identifier"] = "id"
    identifier_system: str | None = None
    appointment: AppointmentPaths = AppointmentPaths()
    encounter: EncounterPaths = EncounterPaths()
    occurred_at_fallback: Literal["resource_time", "reject"] = "resource_time"
    telehealth_codes: list[str] = ["VR", "virtual", "telehealth", "video"]
    virtual_classes: list[str] = ["VR"]
    patient_cancel_prefixes: list[str] = ["pat"]
    checkin_channel: CheckinChannel = "front_desk"
    room_physical_types: list[str] = ["ro", "bd"]
    fulfilled_checks_out: bool = True
    finished_checks_out: bool = True
    encounter_error_withdraws: list[str] = [
        "patient.arrived", "patient.checked_in", "patient.roomed", "provider.started", "patient.checked_out",
    ]
    state_max_resources: Annotated[int, Field(gt=0)] = 100_000

    @field_validator("encounter_error_withdraws")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        for event_type in value:
            if event_type not in FAMILY_BY_TYPE:
                raise ValueError(f"{event_type!r} is not a contract event type")
        return value
