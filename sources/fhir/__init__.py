"""FHIR R4 Appointment and Encounter notifications as contract-v1 events (parsed with fhir.resources R4B).

>>> from sources.fhir import FHIRSource
>>> source = FHIRSource()
>>> events = source.map({"resourceType": "Appointment", "id": "a1", "status": "booked",
...     "meta": {"versionId": "1", "lastUpdated": "2026-03-02T08:00:00-05:00"},
...     "start": "2026-03-10T09:30:00-05:00", "minutesDuration": 20,
...     "serviceType": [{"coding": [{"code": "followup"}]}], "specialty": [{"coding": [{"code": "cardiology"}]}],
...     "participant": [{"actor": {"reference": "Patient/p1"}, "status": "accepted"},
...                     {"actor": {"reference": "Location/north"}, "status": "accepted"}]})
>>> [(e["event_type"], e["appointment_id"], e["site_id"], e["duration_min"]) for e in events]
[('appointment.booked', 'a1', 'north', 20)]
"""

from sources.fhir.config import FHIRSourceConfig
from sources.fhir.source import FHIRSource

__all__ = ["FHIRSource", "FHIRSourceConfig"]
