"""The source interface: one native message in, contract-v1 event dicts (or a rejection) out.

A source is pure Python: it parses, maps and checks, and keeps the little state it needs
(last known start per appointment, say). It never talks to Kafka; a server around it is
handed an async ``publish`` function.

Mapping happens in two steps so that a server can publish before the source remembers
anything: :meth:`Source.prepare` returns the events and a ``commit`` that applies the
state changes (call it once the events are safely published); :meth:`Source.map` does both.

>>> from sources.base import Rejection, Prepared
>>> Rejection("missing_field", "SCH-2.1", "appointment_id: no value").as_dict()
{'reason': 'missing_field', 'path': 'SCH-2.1', 'detail': 'appointment_id: no value'}
>>> Prepared([]).events
[]
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias

from pydantic import BaseModel, ValidationError

from sources.check import contract_problem

EventDict: TypeAlias = dict[str, Any]
Message: TypeAlias = bytes | str

RejectReason = Literal[
    "hl7_parse_error",
    "hl7_unsupported_event",
    "hl7_unsupported_version",
    "missing_field",
    "bad_timestamp",
    "no_timezone",
    "bad_value",
    "fhir_parse_error",
    "fhir_invalid_resource",
    "fhir_unsupported_resource",
    "contract_violation",
    "bad_input",
]
REJECT_REASONS: tuple[str, ...] = RejectReason.__args__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class Rejection:
    """Why a message maps to no event: a reason code, the offending field path, a detail.

    ``path`` is in the message's own notation: ``SCH-2.1`` for HL7 v2, a FHIRPath such as
    ``Appointment.start`` for FHIR.
    """

    reason: RejectReason
    path: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "path": self.path, "detail": self.detail}


class MappingError(Exception):
    """Raised inside a mapping to abort it; carries the :class:`Rejection`."""

    def __init__(self, reason: RejectReason, path: str, detail: str) -> None:
        super().__init__(f"{reason} at {path}: {detail}")
        self.rejection = Rejection(reason, path, detail)


def _no_commit() -> None:
    return None


@dataclass(slots=True)
class Prepared:
    """Events mapped from one message, plus the state change to apply once they are published."""

    events: list[EventDict]
    commit: Callable[[], None] = field(default=_no_commit)


Result: TypeAlias = list[EventDict] | Rejection


class Source(ABC):
    """Base class of every source. Subclasses set ``config_model`` and implement ``prepare``.

    ``config`` is an instance of ``config_model``, a mapping of its fields (as read from
    YAML) or ``None`` for the defaults. A bad configuration raises :class:`ValueError`
    naming the setting.
    """

    config_model: ClassVar[type[BaseModel]]

    def __init__(self, config: BaseModel | Mapping[str, Any] | None = None) -> None:
        self.config = self.parse_config(config)

    @classmethod
    def parse_config(cls, config: BaseModel | Mapping[str, Any] | None) -> Any:
        if isinstance(config, cls.config_model):
            return config
        if isinstance(config, BaseModel):
            config = config.model_dump()
        try:
            return cls.config_model.model_validate(dict(config or {}))
        except ValidationError as error:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '<config>'}: {e['msg']}" for e in error.errors()
            )
            raise ValueError(f"bad {cls.__name__} configuration: {problems}") from None

    @property
    def name(self) -> str:
        """The value written to each event's ``source`` field."""
        return str(getattr(self.config, "name", type(self).__name__))

    def split_messages(self, data: bytes) -> list[bytes]:
        """The messages of a file's bytes; by default the whole file is one message."""
        return [data] if data.strip() else []

    @abstractmethod
    def prepare(self, message: Message) -> Prepared | Rejection:
        """Map ``message`` without changing the source's state; see :class:`Prepared`."""

    def try_prepare(self, message: Message) -> Prepared | Rejection:
        """:meth:`prepare`, with a :class:`MappingError` raised inside it turned into its rejection."""
        try:
            return self.prepare(message)
        except MappingError as error:
            return error.rejection

    def map(self, message: Message) -> Result:
        """Map ``message`` and remember what it taught (the state is committed at once)."""
        prepared = self.try_prepare(message)
        if isinstance(prepared, Rejection):
            return prepared
        prepared.commit()
        return prepared.events


def checked(events: list[EventDict], path_of: Callable[[str], str] = lambda f: f) -> list[EventDict]:
    """Return ``events`` if every one passes the contract (or the withdrawal check).

    Raises :class:`MappingError` (``contract_violation``) naming the first bad field;
    ``path_of`` turns a contract field name into the message's field path for the report.
    """
    for event in events:
        problem = contract_problem(event)
        if problem is not None:
            field_name, detail = problem
            raise MappingError("contract_violation", path_of(field_name), detail)
    return events
