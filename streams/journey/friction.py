"""Friction rules: configuration (YAML) checked at load, evaluated against a journey.

>>> rules = load_rules()
>>> [r.name for r in rules][:3]
['lobby_wait', 'room_wait', 'provider_start_delay']
>>> Rule(name="x", metric="lobby_wait", op=">", threshold=1, severity="low")  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
pydantic_core._pydantic_core.ValidationError: 1 validation error for Rule
metric
  Value error, unknown metric 'lobby_wait'; one of: ...
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from streams.journey.metrics import JourneyView

Op = Literal[">", ">=", "<", "<=", "is_true"]
Severity = Literal["low", "medium", "high"]

PER_WAIT_METRIC = "wait_estimate_error_min"
FLAG_METRICS = frozenset({"left_without_being_seen"})
JOURNEY_METRICS = frozenset(
    {
        "lead_time_days",
        "reschedule_count",
        "late_cancelled",
        "no_show",
        "arrival_offset_min",
        "arrival_to_checkin_min",
        "lobby_wait_min",
        "room_wait_min",
        "checkin_to_provider_min",
        "provider_start_delay_min",
        "cycle_time_min",
        "wait_estimate_error_min",
        "patient_join_offset_min",
        "provider_join_offset_min",
        "virtual_wait_min",
        "telehealth_connected",
        "telehealth_abandoned",
        "drop_count",
        "connection_issue_count",
        "reminders_sent",
    }
)
RULE_METRICS = JOURNEY_METRICS | FLAG_METRICS


class FrictionRuleError(ValueError):
    """The friction rules file is unreadable or a rule is invalid."""


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    metric: str
    op: Op
    threshold: float = 0.0
    severity: Severity = "medium"

    @field_validator("metric")
    @classmethod
    def _known_metric(cls, value: str) -> str:
        if value not in RULE_METRICS:
            raise ValueError(f"unknown metric {value!r}; one of: {', '.join(sorted(RULE_METRICS))}")
        return value

    def crosses(self, value: float | None) -> bool:
        if value is None:
            return False
        if self.op == "is_true":
            return bool(value)
        if self.op == ">":
            return value > self.threshold
        if self.op == ">=":
            return value >= self.threshold
        if self.op == "<":
            return value < self.threshold
        return value <= self.threshold


def load_rules(path: Path | None = None) -> tuple[Rule, ...]:
    """Rules from ``path``, or the SPEC defaults shipped beside this module."""
    try:
        text = path.read_text() if path else resources.files("streams.journey").joinpath("friction_rules.yaml").read_text()
        document = yaml.safe_load(text) or {}
        rules = tuple(Rule(**item) for item in document.get("rules", []))
    except (OSError, yaml.YAMLError, TypeError, AttributeError) as error:
        raise FrictionRuleError(f"friction rules {path}: {error}") from error
    except ValidationError as error:
        raise FrictionRuleError(f"friction rules {path or 'defaults'}: {error}") from error
    names = [rule.name for rule in rules]
    if len(set(names)) != len(names):
        raise FrictionRuleError(f"friction rules {path}: rule names must be unique, got {names}")
    return rules


def evaluate(view: JourneyView, rules: tuple[Rule, ...]) -> list[dict[str, Any]]:
    """The friction hits of one journey: rule, hit_key, severity, value, threshold, occurred_at."""
    hits: list[dict[str, Any]] = []
    row = view.row
    fallback_time = row["scheduled_start"] if row["scheduled_start"] is not None else row["last_event_at"]
    for rule in rules:
        if rule.metric == PER_WAIT_METRIC:
            for wait in view.queue_waits:
                if rule.crosses(wait["estimate_error_min"]):
                    hits.append(_hit(rule, wait["wait_key"], wait["estimate_error_min"], wait["ended_at"]))
            continue
        value = view.flags[rule.metric] if rule.metric in FLAG_METRICS else row[rule.metric]
        if rule.crosses(value):
            touched = view.touchpoints.get(rule.metric)
            hits.append(_hit(rule, "", float(value), touched if touched is not None else fallback_time))
    return hits


def _hit(rule: Rule, hit_key: str, value: float, occurred_at: int) -> dict[str, Any]:
    return {
        "rule": rule.name,
        "hit_key": hit_key,
        "severity": rule.severity,
        "value": float(value),
        "threshold": 1.0 if rule.op == "is_true" else rule.threshold,
        "occurred_at": occurred_at,
    }
