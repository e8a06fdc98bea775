"""Event sources that hospitals actually emit: HL7 v2 and FHIR R4 messages as contract-v1 events.

>>> from sources import load_source, Rejection
>>> verdict = load_source("hl7").map(b"not hl7")
>>> isinstance(verdict, Rejection), verdict.reason
(True, 'hl7_parse_error')
"""

from sources.base import REJECT_REASONS, EventDict, Prepared, Rejection, RejectReason, Result, Source
from sources.registry import ENTRY_POINT_GROUP, available_sources, load_source, source_class

__all__ = [
    "ENTRY_POINT_GROUP",
    "REJECT_REASONS",
    "EventDict",
    "Prepared",
    "RejectReason",
    "Rejection",
    "Result",
    "Source",
    "available_sources",
    "load_source",
    "source_class",
]
