"""``journeys schema export``: one JSON Schema per family that agrees with the decoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from schemas.decode import Rejected, decode
from schemas.events import DEFAULT_TOPICS, EVENT_TYPES_BY_FAMILY, FAMILIES
from schemas.export import all_schemas, example_event

jsonschema = pytest.importorskip("jsonschema")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    directory = tmp_path_factory.mktemp("schemas")
    assert main(["schema", "export", str(directory)]) == 0
    return {family: json.loads((directory / f"{family}.schema.json").read_text()) for family in FAMILIES}


def test_export_writes_one_file_per_family_and_prints_the_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["schema", "export", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out.split()
    assert sorted(printed) == sorted(str(tmp_path / "out" / f"{f}.schema.json") for f in FAMILIES)


def test_export_is_deterministic(tmp_path: Path) -> None:
    assert main(["schema", "export", str(tmp_path / "a")]) == 0
    assert main(["schema", "export", str(tmp_path / "b")]) == 0
    for family in FAMILIES:
        name = f"{family}.schema.json"
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


@pytest.mark.parametrize("family", FAMILIES)
def test_schema_document_metadata(exported: dict[str, dict[str, Any]], family: str) -> None:
    schema = exported[family]
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$id"].endswith(f":v1:{family}")
    assert schema["title"] and schema["description"]
    assert schema["x-contract-version"] == 1
    assert schema["x-topic"] == DEFAULT_TOPICS[family]  # type: ignore[index]
    assert set(schema["x-discriminator"]["mapping"]) == set(EVENT_TYPES_BY_FAMILY[family])  # type: ignore[index]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_event_type_of_the_family_validates(exported: dict[str, dict[str, Any]], family: str) -> None:
    validator = jsonschema.Draft202012Validator(exported[family])
    for event_type in EVENT_TYPES_BY_FAMILY[family]:  # type: ignore[index]
        event = example_event(event_type)
        assert list(validator.iter_errors(event)) == []
        # The same bytes pass the pipeline's decoder: schema and decoder agree.
        assert not isinstance(decode(json.dumps(event).encode(), topic=DEFAULT_TOPICS[family]), Rejected)  # type: ignore[index]


def errors_of(schema: dict[str, Any], event: dict[str, Any]) -> list[tuple[str, str]]:
    validator = jsonschema.Draft202012Validator(schema)
    return [(".".join(map(str, e.absolute_path)), e.message) for e in validator.iter_errors(event)]


@pytest.mark.parametrize(
    ("family", "event", "field"),
    [
        ("checkin", example_event("patient.arrived", occurred_at="2026-03-02T09:55:00"), "occurred_at"),
        ("scheduling", example_event("appointment.booked", modality="carrier_pigeon"), "modality"),
        ("scheduling", example_event("appointment.booked", duration_min=0), "duration_min"),
        ("waits", example_event("wait.ended", outcome="gave_up"), "outcome"),
        ("telehealth", example_event("connection.issue", severity=7), "severity"),
        ("checkin", example_event("patient.arrived", event_type="patient.teleported"), "event_type"),
        ("checkin", example_event("appointment.booked"), "event_type"),  # another family's event
        ("scheduling", example_event("appointment.booked", schema_version=2), "schema_version"),
    ],
)
def test_invalid_events_fail_on_the_named_field(
    exported: dict[str, dict[str, Any]], family: str, event: dict[str, Any], field: str
) -> None:
    errors = errors_of(exported[family], event)
    assert errors and {path for path, _ in errors} == {field}, errors
    assert isinstance(decode(json.dumps(event).encode(), topic=DEFAULT_TOPICS[family]), Rejected)  # type: ignore[index]


def test_a_missing_family_field_is_reported(exported: dict[str, dict[str, Any]]) -> None:
    event = example_event("appointment.booked")
    del event["visit_type"]
    assert errors_of(exported["scheduling"], event) == [("", "'visit_type' is a required property")]


def test_in_memory_and_exported_schemas_are_the_same(exported: dict[str, dict[str, Any]]) -> None:
    assert json.loads(json.dumps(all_schemas())) == exported
