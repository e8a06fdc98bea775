"""``journeys fhir convert FILE...`` / ``journeys fhir serve``: FHIR R4 resources as contract-v1 events.

``convert`` prints the events of every resource or Bundle file as JSON lines (reasons on
stderr, exit 1 if any was rejected); ``serve`` is an HTTP endpoint for subscription
notifications, Bundles and resources (``POST /``, ``PUT /Appointment/{id}``) that answers
200 only once Kafka has acknowledged the events and the request body (raw topic
``JOURNEYS_TOPIC_RAW_FHIR``), 400/422 with an OperationOutcome naming the element when it
maps to nothing valid, 503 when Kafka did not take it::

    $ journeys fhir serve --port 8089 --bootstrap kafka:9092 --config fhir-east.yaml
"""

from __future__ import annotations

from typing import Any

from cli.commands.hl7 import register_source


def register(subparsers: Any) -> None:
    register_source(subparsers, "fhir", "serve", 8089)
