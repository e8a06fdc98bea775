"""The clinic traffic simulator: real bytes through ``decode()``, truth checked from the events."""

from __future__ import annotations

import datetime as dt
import itertools
import math
import re
import statistics
import time
from collections import Counter, defaultdict
from typing import Any

import orjson
import pytest

from cli.main import main
from schemas.decode import Rejected, decode
from schemas.events import FAMILY_BY_TYPE, Envelope
from schemas.timestamps import DAY_MS
from simulator import AppointmentTruth, Simulation, SimulationConfig, SimulationStream, simulate
from simulator.disorder import INVALID_REASONS

EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
MESSY = dict(duplicate_fraction=0.03, out_of_order_fraction=0.05, late_fraction=0.02, invalid_fraction=0.01)


def ms(moment: dt.datetime) -> int:
    return (moment - EPOCH) // dt.timedelta(milliseconds=1)


@pytest.fixture(scope="module")
def sim() -> Simulation:
    """Ten days at three sites, delivered badly."""
    return simulate(SimulationConfig(seed=11, days=10, sites=3, volume=12, **MESSY))


@pytest.fixture(scope="module")
def decoded(sim: Simulation) -> list[Envelope | Rejected]:
    return [decode(line) for line in sim.lines]


def valid_journeys(lines: list[bytes]) -> dict[str, list[Any]]:
    """Valid events per appointment, deduplicated on (source, event_id)."""
    seen: dict[tuple[str, str], Any] = {}
    for line in lines:
        event = decode(line)
        if not isinstance(event, Rejected):
            seen.setdefault((event.source, event.event_id), event)
    by_appointment: dict[str, list[Any]] = defaultdict(list)
    for event in seen.values():
        by_appointment[event.appointment_id].append(event)
    return by_appointment


@pytest.fixture(scope="module")
def journeys(sim: Simulation) -> dict[str, list[Any]]:
    return valid_journeys(sim.lines)


# -- determinism and shape ----------------------------------------------------------


def test_same_seed_same_bytes_and_truth() -> None:
    config = SimulationConfig(seed=5, days=2, sites=2, volume=8, **MESSY)
    first, second = simulate(config), simulate(config)
    assert first.lines == second.lines
    assert first.truth == second.truth
    assert first.patients == second.patients
    assert first.invalid_line_numbers == second.invalid_line_numbers
    assert simulate(config.model_copy(update={"seed": 6})).lines != first.lines


def test_streaming_gives_the_same_lines_without_truth() -> None:
    config = SimulationConfig(seed=5, days=3, sites=2, volume=8, **MESSY)
    assert [line.data for line in SimulationStream(config)] == simulate(config).lines


def test_every_event_type_and_reason_appears(sim: Simulation, decoded: list[Envelope | Rejected]) -> None:
    types = Counter(e.event_type for e in decoded if not isinstance(e, Rejected))  # type: ignore[attr-defined]
    assert set(types) == set(FAMILY_BY_TYPE), set(FAMILY_BY_TYPE) - set(types)
    assert set(sim.invalid_line_numbers.values()) == set(INVALID_REASONS)


def test_decode_accepts_every_valid_line_and_rejects_exactly_the_injected_ones(
    sim: Simulation, decoded: list[Envelope | Rejected]
) -> None:
    rejected = {n: v.reason for n, v in enumerate(decoded, 1) if isinstance(v, Rejected)}
    assert rejected == sim.invalid_line_numbers
    assert 0 < len(rejected) < len(decoded) * 0.03


def test_envelope_details(sim: Simulation, decoded: list[Envelope | Rejected]) -> None:
    valid = [(line, e) for line, e in zip(sim.lines, decoded) if not isinstance(e, Rejected)]
    stamps = Counter()
    for line, event in valid:
        text = orjson.loads(line)["occurred_at"]
        stamps[re.search(r"(Z|[+-]\d\d:\d\d)$", text).group(1)] += 1  # type: ignore[union-attr]
        if event.source == "hl7-siu":
            assert "." not in text  # HL7 timestamps are whole seconds
    # Site-local offsets (Eastern, Central, Pacific) and the telehealth platform's UTC.
    assert {"-05:00", "-06:00", "-08:00", "Z"} <= set(stamps)
    assert {e.source for _, e in valid} >= {"cadence", "hl7-siu", "kiosk", "telehealth-hub", "qflow"}
    assert all(e.schema_version == 1 for _, e in valid)
    assert any(e.attributes for _, e in valid) and any(e.provider_id is None for _, e in valid)


def test_disorder_duplicates_and_lateness(sim: Simulation, decoded: list[Envelope | Rejected]) -> None:
    counts = Counter(sim.lines)
    assert any(n == 2 for n in counts.values())  # verbatim re-sends
    ids: dict[tuple[str, str], bytes] = {}
    for line, event in zip(sim.lines, decoded):
        if not isinstance(event, Rejected):
            # One event id, one content: duplicates are exact.
            assert ids.setdefault((event.source, event.event_id), line) == line
    occurred = [ms(e.occurred_at) for e in decoded if not isinstance(e, Rejected)]
    inversions = sum(1 for a, b in zip(occurred, occurred[1:]) if b < a)
    assert inversions > len(occurred) * 0.02
    # Late deliveries: lines that came out more than an hour after a later-occurring one.
    running_max, late = 0, 0
    for value in occurred:
        late += running_max - value > 3_600_000
        running_max = max(running_max, value)
    assert late > 0


def test_disorder_knobs_do_not_change_the_world() -> None:
    clean = simulate(SimulationConfig(seed=9, days=2, sites=2, volume=8))
    occurred = [ms(decode(line).occurred_at) for line in clean.lines]  # type: ignore[union-attr]
    assert occurred == sorted(occurred)  # no knob, no disorder
    messy = simulate(SimulationConfig(seed=9, days=2, sites=2, volume=8, **MESSY))
    assert clean.truth == messy.truth
    valid = {line for n, line in enumerate(messy.lines, 1) if n not in messy.invalid_line_numbers}
    assert valid == set(clean.lines)


# -- truth sanity ----------------------------------------------------------------------


def test_truth_covers_every_appointment_and_outcome(sim: Simulation, journeys: dict[str, list[Any]]) -> None:
    assert set(sim.truth) == set(journeys)
    truth = list(sim.truth.values())
    statuses = Counter(t.status for t in truth)
    assert {"completed", "no_show", "cancelled", "late_cancelled", "left_without_being_seen"} <= set(statuses)
    n = len(truth)
    assert 0.03 < statuses["no_show"] / n < 0.2
    assert sum(t.late_cancelled for t in truth) > 0
    telehealth = [t for t in truth if t.modality == "telehealth"]
    assert 0.1 < len(telehealth) / n < 0.4
    assert 0 < sum(bool(t.telehealth_abandoned) for t in telehealth) < len(telehealth) * 0.2
    assert sum(t.reschedule_count > 0 for t in truth) > 0
    assert any(t.reminders_sent == 0 for t in truth) and max(t.reminders_sent for t in truth) >= 3
    # Both kinds of no-show: with an appointment.no_show event and silent.
    explicit = {a for a, events in journeys.items() if any(e.event_type == "appointment.no_show" for e in events)}
    no_shows = {t.appointment_id for t in truth if t.no_show}
    assert explicit < no_shows and no_shows - explicit
    rules = Counter(hit.rule for t in truth for hit in t.friction)
    assert set(rules) == {
        "lobby_wait", "room_wait", "provider_start_delay", "cycle_time", "arrival_to_checkin", "virtual_wait",
        "telehealth_abandoned", "drop_count", "wait_estimate_error", "no_show", "late_cancellation",
        "left_without_being_seen",
    } - ({"room_wait"} if rules["room_wait"] == 0 else set())
    queues = {q for t in truth for q in t.queue_wait_min}
    assert queues == {"lobby", "lab", "imaging", "pharmacy", "virtual_waiting_room"}
    assert any(t.queue_abandoned.get(q) for t in truth for q in t.queue_abandoned)
    assert any(t.wait_estimate_error_min is not None and t.wait_estimate_error_min > 15 for t in truth)


def test_provider_days_are_single_server_queues(sim: Simulation) -> None:
    days: dict[tuple[str, int], list[AppointmentTruth]] = defaultdict(list)
    for t in sim.truth.values():
        if t.modality == "in_person" and t.provider_start_delay_min is not None:
            days[(t.provider_id, t.scheduled_start_ms // 86_400_000)].append(t)
    by_position: dict[int, list[float]] = defaultdict(list)
    for visits in days.values():
        visits.sort(key=lambda t: t.scheduled_start_ms)
        starts = [t.scheduled_start_ms + t.provider_start_delay_min * 60_000 for t in visits]  # type: ignore[operator]
        assert starts == sorted(starts), "a provider sees one patient at a time, in booked order"
        for position, t in enumerate(visits):
            by_position[min(position, 5)].append(t.lobby_wait_min)  # type: ignore[arg-type]
    # Delays cascade: later patients wait longer in the lobby than the first of the day.
    assert statistics.mean(by_position[0]) + 2 < statistics.mean(by_position[4] + by_position[5])
    late_days = [v for v in days.values() if len(v) >= 6 and v[0].provider_start_delay_min > 15]  # type: ignore[operator]
    assert late_days
    assert statistics.mean(v[-1].provider_start_delay_min for v in late_days) > 10  # type: ignore[misc]


def test_patients_return_and_figures_add_up(sim: Simulation) -> None:
    patients = sim.patients
    truth = sim.truth.values()
    assert sum(p.visits_completed for p in patients.values()) == sum(t.status == "completed" for t in truth)
    assert sum(p.no_shows for p in patients.values()) == sum(t.status == "no_show" for t in truth)
    assert sum(p.late_cancellations for p in patients.values()) == sum(t.status == "late_cancelled" for t in truth)
    returned = Counter(v.returned_within_90d for p in patients.values() for v in p.visits)
    assert returned[False] == 0 and returned[None] > 0  # 10 days: nobody is known not to return


@pytest.fixture(scope="module")
def season() -> Simulation:
    """A hundred days at one site: long enough for patients to come back, and to leave."""
    return simulate(SimulationConfig(seed=4, days=100, sites=1, volume=6, friction_churn=2.0))


def test_patients_keep_their_cadence_and_leave(season: Simulation) -> None:
    truth = season.truth.values()
    per_day = Counter((t.patient_id, t.scheduled_start_ms // DAY_MS) for t in truth)
    assert max(per_day.values()) == 1  # nobody books a dozen visits a day
    patients = season.patients
    repeat = [p for p in patients.values() if p.visits_completed >= 2]
    assert len(repeat) > len(patients) * 0.4
    gaps = sorted(
        (b.scheduled_start_ms - a.scheduled_start_ms) / DAY_MS
        for p in repeat for a, b in itertools.pairwise(p.visits)
    )
    assert 10 < gaps[len(gaps) // 2] < 50  # follow-ups every few weeks, by department
    # Departures: after a completed visit, never seen again; friction doubles the chance.
    assert len(season.departures) > 20
    by_patient = {d.patient_id: d for d in season.departures}
    for departure in season.departures:
        last = patients[departure.patient_id].visits[-1]
        assert last.appointment_id == departure.appointment_id
        assert departure.probability == pytest.approx(departure.baseline * (2.0 if departure.rules else 1.0))
    assert all(t.scheduled_start_ms <= by_patient[t.patient_id].visit_at_ms for t in truth if t.patient_id in by_patient)


def test_appointment_ids_never_collide_across_runs() -> None:
    first = simulate(SimulationConfig(seed=1, days=2, sites=1, volume=4))
    again = simulate(SimulationConfig(seed=1, days=2, sites=1, volume=4))
    later = simulate(SimulationConfig(seed=1, days=2, sites=1, volume=4, start=dt.date(2026, 3, 4)))
    other = simulate(SimulationConfig(seed=2, days=2, sites=1, volume=4))
    assert set(first.truth) == set(again.truth)  # a run is a pure function of its config
    assert not set(first.truth) & set(later.truth) and not set(first.truth) & set(other.truth)


def test_watermark_edge_of_the_input() -> None:
    """A world stopped mid-day: journeys in progress, and silent no-shows only past their deadline."""
    cutoff = dt.datetime(2026, 3, 3, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    sim = simulate(SimulationConfig(seed=4, days=3, sites=2, volume=10, cutoff=cutoff))
    cut = ms(cutoff)
    assert sim.watermark_ms is not None and sim.watermark_ms <= cut
    journeys = valid_journeys(sim.lines)
    assert all(ms(e.occurred_at) <= cut for events in journeys.values() for e in events)
    statuses = Counter(t.status for t in sim.truth.values())
    assert statuses["in_progress"] > 0 and statuses["scheduled"] > 0 and statuses["completed"] > 0
    pending = 0
    for appointment_id, t in sim.truth.items():
        types = {e.event_type for e in journeys[appointment_id]}
        silent = t.status not in ("cancelled", "late_cancelled") and "appointment.no_show" not in types and not (
            types & {"patient.arrived", "participant.joined"})
        if silent:
            passed = t.scheduled_start_ms + 30 * 60_000 <= sim.watermark_ms
            assert t.no_show == passed, appointment_id
            pending += not passed
        assert t.is_final == (t.scheduled_start_ms + 24 * 3_600_000 <= sim.watermark_ms)
    assert pending > 0
    assert_truth_matches_events(sim, journeys)


# -- truth against a direct recomputation from the events -------------------------------


def first(events: list[Any], event_type: str, **match: Any) -> int | None:
    times = [
        ms(e.occurred_at) for e in events
        if e.event_type == event_type and all(getattr(e, k) == v for k, v in match.items())
    ]
    return min(times, default=None)


def minutes(a: int | None, b: int | None) -> float | None:
    return None if a is None or b is None else (b - a) / 60_000


def recompute(events: list[Any], watermark: int) -> dict[str, Any]:
    """Every appointment metric of METRICS.md, read straight off one journey's events.

    Deliberately plain (and slow): a second reading of METRICS.md, independent of the
    simulator's model. Every journey here has an ``appointment.booked``.
    """
    def of(*types: str) -> list[Any]:
        return sorted((e for e in events if e.event_type in types), key=lambda e: (ms(e.occurred_at), e.source, e.event_id))

    schedule = of("appointment.booked", "appointment.rescheduled")
    start = ms(schedule[-1].scheduled_start)
    booked = of("appointment.booked")[0]
    telehealth = booked.modality == "telehealth"
    arrived, checked_in = first(events, "patient.arrived"), first(events, "patient.checked_in")
    roomed, started = first(events, "patient.roomed"), first(events, "provider.started")
    checked_out = first(events, "patient.checked_out")
    cancels = of("appointment.cancelled")
    late = bool(cancels) and cancels[0].cancelled_by == "patient" and start - ms(cancels[0].occurred_at) < 24 * 3_600_000
    patient_joins = [ms(e.occurred_at) for e in of("participant.joined") if e.role == "patient"]
    provider_joins = [ms(e.occurred_at) for e in of("participant.joined") if e.role == "provider"]
    patient_lefts = [ms(e.occurred_at) for e in of("participant.left") if e.role == "patient"]
    deadline = start + 30 * 60_000
    shown = [t for t in (patient_joins if telehealth else [ms(e.occurred_at) for e in of("patient.arrived")]) if t <= deadline]
    explicit = bool(of("appointment.no_show"))
    no_show = explicit or (not cancels and watermark >= deadline and not shown)
    ended = first(events, "session.ended")
    if cancels:
        status = "late_cancelled" if late else "cancelled"
    elif explicit:
        status = "no_show"
    elif (not telehealth and checked_out) or (telehealth and ended and patient_joins and provider_joins):
        status = "completed"
    elif of("patient.left_without_being_seen") or (telehealth and patient_lefts and not provider_joins):
        status = "left_without_being_seen"
    elif no_show:
        status = "no_show"
    elif (not telehealth and (arrived or checked_in or roomed or started)) or (telehealth and patient_joins):
        status = "in_progress"
    else:
        status = "scheduled"

    called: dict[str, float] = {}
    abandoned: dict[str, int] = {}
    errors: list[float] = []
    for queue in sorted({e.queue for e in of("wait.started", "wait.ended")}):
        open_starts: list[int] = []
        for e in of("wait.started", "wait.ended"):
            if e.queue != queue:
                continue
            if e.event_type == "wait.started":
                open_starts.append(ms(e.occurred_at))
                continue
            end = ms(e.occurred_at)
            if not open_starts:
                continue
            begin = open_starts.pop(0)
            called.setdefault(queue, 0.0)
            abandoned.setdefault(queue, 0)
            if e.outcome == "abandoned":
                abandoned[queue] += 1
                continue
            called[queue] += (end - begin) / 60_000
            told = [x for x in of("wait.estimate_published") if x.queue == queue and ms(x.occurred_at) <= end]
            if told:
                errors.append((end - begin) / 60_000 - told[-1].estimated_wait_min)
    p_join, v_join = min(patient_joins, default=None), min(provider_joins, default=None)
    p_left = min(patient_lefts, default=None)
    return {
        "status": status,
        "no_show": no_show,
        "late_cancelled": late,
        "is_final": watermark >= start + 24 * 3_600_000,
        "lead_time_days": (start - ms(booked.occurred_at)) / 86_400_000,
        "reschedule_count": len(of("appointment.rescheduled")),
        "reminders_sent": sum(ms(e.occurred_at) < start for e in of("appointment.reminder_sent")),
        "arrival_offset_min": minutes(start, arrived),
        "arrival_to_checkin_min": minutes(arrived, checked_in),
        "lobby_wait_min": minutes(checked_in, roomed),
        "room_wait_min": minutes(roomed, started),
        "checkin_to_provider_min": minutes(checked_in, started),
        "provider_start_delay_min": minutes(start, started),
        "cycle_time_min": minutes(arrived, checked_out),
        "queue_wait_min": called,
        "queue_abandoned": abandoned,
        "wait_estimate_error_min": max(errors, key=abs) if errors else None,
        "drop_count": sum(e.reason == "dropped" for e in of("participant.left")),
        "connection_issue_count": len(of("connection.issue")),
        "patient_join_offset_min": minutes(start, p_join) if telehealth else None,
        "provider_join_offset_min": minutes(start, v_join) if telehealth else None,
        "virtual_wait_min": minutes(p_join, v_join) if telehealth and p_join and v_join and p_join < v_join else None,
        "telehealth_connected": (p_join is not None and v_join is not None) if telehealth else None,
        "telehealth_abandoned": (p_left is not None and (v_join is None or v_join > p_left)) if telehealth else None,
    }


def assert_truth_matches_events(sim: Simulation, journeys: dict[str, list[Any]]) -> None:
    assert sim.watermark_ms is not None
    assert set(sim.truth) == set(journeys)
    for appointment_id, events in journeys.items():
        expected = sim.truth[appointment_id]
        for metric, value in recompute(events, sim.watermark_ms).items():
            actual = getattr(expected, metric)
            if isinstance(value, dict):
                assert value.keys() == actual.keys(), (appointment_id, metric, value, actual)
                assert all(math.isclose(v, actual[k], abs_tol=1e-9) for k, v in value.items()), (appointment_id, metric)
            elif isinstance(value, float):
                assert actual is not None and math.isclose(value, actual, abs_tol=1e-9), (appointment_id, metric, value, actual)
            else:
                assert value == actual, (appointment_id, metric, value, actual)


def test_truth_matches_a_recomputation_from_the_events(sim: Simulation, journeys: dict[str, list[Any]]) -> None:
    assert sim.watermark_ms == max(ms(e.occurred_at) for events in journeys.values() for e in events)
    assert_truth_matches_events(sim, journeys)


def test_friction_follows_the_spec_defaults(sim: Simulation) -> None:
    over = {"lobby_wait": ("lobby_wait_min", 20), "room_wait": ("room_wait_min", 15),
            "provider_start_delay": ("provider_start_delay_min", 15), "cycle_time": ("cycle_time_min", 90),
            "arrival_to_checkin": ("arrival_to_checkin_min", 10), "virtual_wait": ("virtual_wait_min", 10)}
    for t in sim.truth.values():
        hits = Counter(hit.rule for hit in t.friction)
        for rule, (metric, threshold) in over.items():
            value = getattr(t, metric)
            assert hits[rule] == (value is not None and value > threshold), (t.appointment_id, rule)
        assert hits["drop_count"] == (t.drop_count >= 2)
        assert hits["no_show"] == t.no_show
        assert hits["late_cancellation"] == t.late_cancelled
        assert hits["telehealth_abandoned"] == bool(t.telehealth_abandoned)
        # The rule is the check-in event; a telehealth patient who gave up has telehealth_abandoned.
        assert hits["left_without_being_seen"] == (t.status == "left_without_being_seen" and t.modality == "in_person")
        # Per wait: the journey's worst error is one of them when it crosses the line.
        if t.wait_estimate_error_min is not None and t.wait_estimate_error_min > 15:
            assert t.wait_estimate_error_min in [h.value for h in t.friction if h.rule == "wait_estimate_error"]
        for hit in t.friction:
            assert hit.severity in ("low", "medium", "high")
            assert hit.occurred_at_ms is not None


# -- knobs and the command ------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "field"),
    [({"days": 0}, "days"), ({"invalid_fraction": 0.9}, "invalid_fraction"), ({"sites": -1}, "sites"),
     ({"colour": "red"}, "colour")],
)
def test_bad_knobs_are_named(options: dict[str, Any], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        SimulationConfig(**options)


def test_command_writes_lines_and_truth(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    out, truth = tmp_path / "events.jsonl", tmp_path / "truth.jsonl"
    argv = ["simulate", "--seed", "3", "--days", "2", "--sites", "2", "--volume", "6", "--invalid-fraction", "0.02",
            "--duplicate-fraction", "0.02", "--out", str(out), "--truth", str(truth), "--no-progress"]
    assert main(argv) == 0
    expected = simulate(SimulationConfig(seed=3, days=2, sites=2, volume=6, invalid_fraction=0.02, duplicate_fraction=0.02))
    assert out.read_bytes() == b"\n".join(expected.lines) + b"\n"
    records = [orjson.loads(line) for line in truth.read_bytes().splitlines()]
    kinds = Counter(r["record"] for r in records)
    assert kinds["appointment"] == len(expected.truth) and kinds["patient"] == len(expected.patients)
    assert {r["line"]: r["reason"] for r in records if r["record"] == "invalid_line"} == expected.invalid_line_numbers
    first_record = next(r for r in records if r["record"] == "appointment")
    assert first_record == expected.truth[first_record["appointment_id"]].to_json()
    assert records[-1]["record"] == "summary" and records[-1]["watermark_ms"] == expected.watermark_ms
    assert main(["simulate", "--days", "0", "--out", str(out)]) == 2
    assert "--days" in capsys.readouterr().err


def test_hundred_thousand_events_in_seconds() -> None:
    started = time.perf_counter()
    count = sum(1 for _ in SimulationStream(SimulationConfig(seed=2, days=25, sites=4, volume=14)))
    elapsed = time.perf_counter() - started
    assert count > 100_000
    assert elapsed < 20, f"{count} events took {elapsed:.1f} s"  # ~4 s on one core; generous for busy CI


def test_pacing_follows_delivery_time() -> None:
    from cli.commands.simulate import _paced
    from simulator import SimLine

    lines = [SimLine(b"{}", "checkin", "a", deliver, None) for deliver in (0, 1_000, 100_000, 200_000)]
    started = time.monotonic()
    assert list(_paced(iter(lines), speed=1000.0, live_from_ms=50_000)) == lines
    # Lines before live_from go at once; the rest 100 s apart in simulated time -> 0.1 s.
    assert 0.09 < time.monotonic() - started < 2.0


def test_command_produces_to_the_family_topics(broker: Any, make_topics: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.test_broker import consume_exactly

    names = make_topics("scheduling", "checkin", "waits", "telehealth", "deadletter")
    for family, name in zip(("SCHEDULING", "CHECKIN", "WAITS", "TELEHEALTH", "DEADLETTER"), names):
        monkeypatch.setenv(f"JOURNEYS_TOPIC_{family}", name)
    options = dict(seed=8, days=1, sites=1, volume=4, duplicate_fraction=0.05, invalid_fraction=0.05)
    expected = simulate(SimulationConfig(**options))
    argv = ["simulate", "--seed", "8", "--days", "1", "--sites", "1", "--volume", "4", "--duplicate-fraction", "0.05",
            "--invalid-fraction", "0.05", "--bootstrap", broker.bootstrap, "--no-progress"]
    assert main(argv) == 0
    records = consume_exactly(broker.bootstrap, names, len(expected.lines))
    assert len(records) == len(expected.lines)
    topic_of = dict(zip(("scheduling", "checkin", "waits", "telehealth"), names))
    landed = Counter((r.topic, r.key, r.value) for r in records if r.topic != names[4])
    wanted = Counter(
        (topic_of[item.family], item.key.encode(), item.data) for item in expected.items if item.invalid is None
    )
    assert wanted - landed == Counter()  # every valid line on its family topic, keyed by appointment
