"""Wire contract version 1 (SPEC section 2): one pydantic model per event type.

Every model shares the envelope; ``event_type`` is the discriminator of the
:data:`Event` union. Models are strict: a naive timestamp, a string where a number
belongs, an unknown enum value or a missing family field is rejected.

>>> from schemas.events import EVENT_ADAPTER
>>> event = EVENT_ADAPTER.validate_json(
...     b'{"event_id": "e1", "event_type": "patient.arrived", "schema_version": 1,'
...     b' "occurred_at": "2026-03-02T09:55:00-05:00", "source": "kiosk",'
...     b' "patient_id": "p1", "appointment_id": "a1", "site_id": "s1",'
...     b' "department": "cardiology"}')
>>> event.family, event.occurred_at.isoformat()
('checkin', '2026-03-02T09:55:00-05:00')
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter, field_validator
from pydantic_core import PydanticCustomError

Family = Literal["scheduling", "checkin", "waits", "telehealth"]
FAMILIES: tuple[Family, ...] = ("scheduling", "checkin", "waits", "telehealth")

SCHEMA_VERSION = 1

Modality = Literal["in_person", "telehealth"]
CancelledBy = Literal["patient", "clinic"]
ReminderChannel = Literal["sms", "email", "call", "portal"]
CheckinChannel = Literal["front_desk", "kiosk", "mobile"]
WaitOutcome = Literal["called", "abandoned"]
Role = Literal["patient", "provider"]
LeaveReason = Literal["normal", "dropped"]
IssueKind = Literal["audio", "video", "network"]

# Every accepted instant can be stored (DateTime64(3) in ClickHouse spans 1900..2299) and
# reckoned with; anything outside is a producer's bug, refused with its own reason code.
EARLIEST = datetime(1900, 1, 1, tzinfo=timezone.utc)
LATEST = datetime(2200, 1, 1, tzinfo=timezone.utc)


def _storable(moment: datetime) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise PydanticCustomError("timestamp_out_of_range", "timestamp {value} is outside 1900-01-01 .. 2200-01-01",
                                  {"value": moment.isoformat()})
    return moment


Timestamp = Annotated[AwareDatetime, AfterValidator(_storable)]
NonEmpty64 = Annotated[str, Field(min_length=1, max_length=64)]


class Envelope(BaseModel):
    """Fields every event carries, whatever its family."""

    # Unknown top-level fields are ignored rather than rejected: a producer that adds
    # a field should not lose valid events; free-form data belongs in `attributes`.
    model_config = ConfigDict(strict=True, frozen=True, extra="ignore")

    family: ClassVar[Family]

    event_id: Annotated[str, Field(min_length=1, max_length=128)]
    schema_version: Literal[1]
    occurred_at: Timestamp
    source: Annotated[str, Field(min_length=1)]
    patient_id: NonEmpty64
    appointment_id: NonEmpty64
    site_id: Annotated[str, Field(min_length=1)]
    department: Annotated[str, Field(min_length=1)]
    provider_id: str | None = None
    attributes: dict[str, Any] | None = None


# -- scheduling ---------------------------------------------------------------


class _Scheduling(Envelope):
    family: ClassVar[Family] = "scheduling"


class AppointmentBooked(_Scheduling):
    event_type: Literal["appointment.booked"]
    scheduled_start: Timestamp
    duration_min: Annotated[int, Field(gt=0)]
    visit_type: Annotated[str, Field(min_length=1)]
    modality: Modality


class AppointmentRescheduled(_Scheduling):
    event_type: Literal["appointment.rescheduled"]
    scheduled_start: Timestamp
    duration_min: Annotated[int, Field(gt=0)] | None = None


class AppointmentCancelled(_Scheduling):
    event_type: Literal["appointment.cancelled"]
    cancelled_by: CancelledBy
    reason: str | None = None


class AppointmentNoShow(_Scheduling):
    event_type: Literal["appointment.no_show"]


class AppointmentReminderSent(_Scheduling):
    event_type: Literal["appointment.reminder_sent"]
    channel: ReminderChannel


# -- check-in -------------------------------------------------------------------


class _Checkin(Envelope):
    family: ClassVar[Family] = "checkin"


class PatientArrived(_Checkin):
    event_type: Literal["patient.arrived"]


class PatientCheckedIn(_Checkin):
    event_type: Literal["patient.checked_in"]
    channel: CheckinChannel


class PatientRoomed(_Checkin):
    event_type: Literal["patient.roomed"]
    room: str | None = None


class ProviderStarted(_Checkin):
    event_type: Literal["provider.started"]


class PatientCheckedOut(_Checkin):
    event_type: Literal["patient.checked_out"]


class PatientLeftWithoutBeingSeen(_Checkin):
    event_type: Literal["patient.left_without_being_seen"]


# -- wait-time ------------------------------------------------------------------


class _Waits(Envelope):
    family: ClassVar[Family] = "waits"


QueueName = Annotated[str, Field(min_length=1)]


class WaitStarted(_Waits):
    event_type: Literal["wait.started"]
    queue: QueueName


class WaitEnded(_Waits):
    event_type: Literal["wait.ended"]
    queue: QueueName
    outcome: WaitOutcome


class WaitEstimatePublished(_Waits):
    event_type: Literal["wait.estimate_published"]
    queue: QueueName
    # strict=False so that an integer number of minutes is accepted as a number.
    estimated_wait_min: Annotated[float, Field(ge=0, strict=False, allow_inf_nan=False)]


# -- telehealth -----------------------------------------------------------------


class _Telehealth(Envelope):
    family: ClassVar[Family] = "telehealth"


class SessionCreated(_Telehealth):
    event_type: Literal["session.created"]


class ParticipantJoined(_Telehealth):
    event_type: Literal["participant.joined"]
    role: Role


class ParticipantLeft(_Telehealth):
    event_type: Literal["participant.left"]
    role: Role
    reason: LeaveReason


class ConnectionIssue(_Telehealth):
    event_type: Literal["connection.issue"]
    role: Role
    kind: IssueKind
    severity: Annotated[int, Field(ge=1, le=3)] | None = None


class SessionEnded(_Telehealth):
    event_type: Literal["session.ended"]


# -- corrections (every family) ------------------------------------------------------


class EventWithdrawn(Envelope):
    """A correction (contract v1, additive; ``schemas/CORRECTIONS.md``): every fact of
    ``withdrawn_event_type`` of this appointment that occurred at or before this event is
    withdrawn, whatever the order they arrive in. It travels on the family topic of the
    type it withdraws (an HL7 A11 cancelling a check-in goes to ``journey.checkin``)."""

    event_type: Literal["event.withdrawn"]
    withdrawn_event_type: str

    @property
    def family(self) -> Family:  # type: ignore[override]
        return FAMILY_BY_TYPE[self.withdrawn_event_type]

    @field_validator("withdrawn_event_type")
    @classmethod
    def _a_contract_type(cls, value: str) -> str:
        if value not in FAMILY_BY_TYPE:
            raise ValueError(f"{value!r} is not an event type of contract v1")
        return value


EVENT_MODELS: tuple[type[Envelope], ...] = (
    AppointmentBooked,
    AppointmentRescheduled,
    AppointmentCancelled,
    AppointmentNoShow,
    AppointmentReminderSent,
    PatientArrived,
    PatientCheckedIn,
    PatientRoomed,
    ProviderStarted,
    PatientCheckedOut,
    PatientLeftWithoutBeingSeen,
    WaitStarted,
    WaitEnded,
    WaitEstimatePublished,
    SessionCreated,
    ParticipantJoined,
    ParticipantLeft,
    ConnectionIssue,
    SessionEnded,
)
WITHDRAWN = "event.withdrawn"

# The union of every model, discriminated by ``event_type``.
Event = Annotated[Union[(*EVENT_MODELS, EventWithdrawn)], Field(discriminator="event_type")]  # type: ignore[valid-type]

EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)


def _event_type_of(model: type[Envelope]) -> str:
    return model.model_fields["event_type"].annotation.__args__[0]  # type: ignore[union-attr]


# The event types of SPEC section 2 (a withdrawal belongs to the family of what it withdraws).
MODEL_BY_TYPE: dict[str, type[Envelope]] = {_event_type_of(m): m for m in EVENT_MODELS}
FAMILY_BY_TYPE: dict[str, Family] = {t: m.family for t, m in MODEL_BY_TYPE.items()}
EVENT_TYPES_BY_FAMILY: dict[Family, tuple[str, ...]] = {
    family: tuple(t for t, f in FAMILY_BY_TYPE.items() if f == family) for family in FAMILIES
}

DEFAULT_TOPICS: dict[Family, str] = {
    "scheduling": "journey.scheduling",
    "checkin": "journey.checkin",
    "waits": "journey.waits",
    "telehealth": "journey.telehealth",
}
DEFAULT_DEADLETTER_TOPIC = "journey.deadletter"
