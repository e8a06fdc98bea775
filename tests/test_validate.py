"""``journeys validate`` and the event file reader: line numbers, reasons, exit codes, speed."""

from __future__ import annotations

import io
import json
import time
from pathlib import Path

import orjson
import pytest

from cli.main import main
from schemas.eventfile import read_event_lines
from schemas.events import FAMILY_BY_TYPE
from schemas.export import example_event


def line(event_type: str, /, **overrides: object) -> bytes:
    return json.dumps(example_event(event_type, **overrides)).encode()


def test_reader_skips_blank_lines_keeps_numbers_and_strips_line_endings() -> None:
    data = b"\xef\xbb\xbf" + line("patient.arrived") + b"\r\n\n   \n" + line("session.ended") + b"\n{broken"
    lines = list(read_event_lines(io.BytesIO(data)))
    assert [number for number, _ in lines] == [1, 4, 5]
    assert lines[0][1] == line("patient.arrived")  # BOM and CRLF gone, bytes otherwise untouched
    assert lines[2][1] == b"{broken"  # last line without a newline


def test_reader_is_lazy(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_bytes(line("patient.arrived") + b"\n")
    iterator = read_event_lines(path)
    assert next(iterator)[0] == 1  # the file is read on demand, not up front


def test_all_valid_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "ok.jsonl"
    path.write_bytes(b"\n".join(line(t, event_id=f"e{i}") for i, t in enumerate(sorted(FAMILY_BY_TYPE))) + b"\n")
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.strip() == "checked 19 events: 19 valid, 0 invalid"


def test_invalid_lines_are_reported_with_their_line_numbers_and_exit_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(
        b"\n".join(
            [
                line("patient.arrived"),  # 1
                b"",  # 2 blank: skipped, still counted as a line
                line("patient.arrived", occurred_at="2026-03-02T09:55:00"),  # 3
                b'{"event_type": "patient.arrived"',  # 4
                line("appointment.booked", modality="carrier_pigeon"),  # 5
                line("wait.ended", event_type="wait.paused"),  # 6
                line("session.ended"),  # 7
                line("patient.arrived", occurred_at="2026-03-02T10:00:00"),  # 8
            ]
        )
    )
    assert main(["validate", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "line 3: naive_timestamp occurred_at: timestamp has no UTC offset"
    assert out[1].startswith("line 4: malformed_json not valid JSON")
    assert out[2] == "line 5: invalid_value modality: Input should be 'in_person' or 'telehealth'"
    assert out[3] == "line 6: unknown_event_type event_type: 'wait.paused' is not an event type of contract v1"
    assert out[4].startswith("line 8: naive_timestamp")
    assert out[5:] == [
        "checked 7 events: 2 valid, 5 invalid",
        "  malformed_json: 1",
        "  unknown_event_type: 1",
        "  invalid_value: 1",
        "  naive_timestamp: 2",
    ]


def test_topic_option_reports_events_of_another_family(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "checkin.jsonl"
    path.write_bytes(line("patient.arrived") + b"\n" + line("appointment.booked") + b"\n")
    assert main(["validate", "--topic", "journey.checkin", str(path)]) == 1
    assert capsys.readouterr().out.splitlines()[0].startswith("line 2: wrong_topic event_type: 'appointment.booked'")


def test_max_errors_limits_printing_not_counting(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_bytes(b"{\n" * 10)
    assert main(["validate", "--max-errors", "2", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert [o.split(":")[0] for o in out[:2]] == ["line 1", "line 2"]
    assert out[2] == "checked 10 events: 0 valid, 10 invalid"


def test_missing_file_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(tmp_path / "nope.jsonl")]) == 2
    assert "cannot read" in capsys.readouterr().err


@pytest.mark.slow
def test_validates_200k_lines_quickly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 1M lines take ~4 s on a laptop-class core; 200k keeps the suite fast.
    path = tmp_path / "big.jsonl"
    types = sorted(FAMILY_BY_TYPE)
    events = [orjson.dumps(example_event(t, event_id=f"e{i}")) for i, t in enumerate(types)]
    with path.open("wb") as stream:
        for i in range(200_000):
            stream.write(events[i % len(events)] + b"\n")
    started = time.perf_counter()
    assert main(["validate", str(path)]) == 0
    elapsed = time.perf_counter() - started
    assert "200000 valid" in capsys.readouterr().out
    assert elapsed < 10, f"validate took {elapsed:.1f}s for 200k lines"
