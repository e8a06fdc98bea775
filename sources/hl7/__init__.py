"""HL7 v2 (2.3 to 2.8) scheduling (SIU) and visit (ADT) messages as contract-v1 events.

>>> from sources.hl7 import HL7Source
>>> source = HL7Source({"name": "hl7-adt"})
>>> events = source.map("MSH|^~\\\\&|EHR|NORTH|JRN|JRN|20260302095500-0500||ADT^A10|M1|P|2.5\\r"
...                     "PID|||MRN1^^^NORTH^MR\\rPV1||O|CARD^^^NORTH||||||^|cardiology|||||||||V1")
>>> [(e["event_type"], e["appointment_id"], e["occurred_at"]) for e in events]
[('patient.arrived', 'V1', '2026-03-02T09:55:00-05:00')]
"""

from sources.hl7.config import HL7SourceConfig
from sources.hl7.source import HL7Source

__all__ = ["HL7Source", "HL7SourceConfig"]
