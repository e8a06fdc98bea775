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

import operator
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from journey.metrics import JourneyView

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


def load_rules(path: Path | None = None) -> tuple[Rule, ...]:
    """Rules from ``path``, or the SPEC defaults shipped beside this module."""
    try:
        text = path.read_text() if path else resources.files("journey").joinpath("friction_rules.yaml").read_text()
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
    for rule, metric, crosses, per_wait, is_flag in _checks(rules):
        if per_wait:
            for wait in view.queue_waits:
                error = wait["estimate_error_min"]
                if error is not None and crosses(error):
                    hits.append(_hit(rule, wait["wait_key"], error, wait["ended_at"]))
            continue
        value = view.flags[metric] if is_flag else row[metric]
        if value is not None and crosses(value):
            touched = view.touchpoints.get(metric)
            hits.append(_hit(rule, "", float(value), touched if touched is not None else fallback_time))
    return hits


# A rule as evaluate() applies it: (rule, metric, crosses, per wait, flag metric).
_Check = tuple[Rule, str, Callable[[float], bool], bool, bool]
# Checks per rules tuple, by identity: the processor passes the same tuple every time.
_CHECKS: dict[int, tuple[tuple[Rule, ...], tuple[_Check, ...]]] = {}


def _checks(rules: tuple[Rule, ...]) -> tuple[_Check, ...]:
    cached = _CHECKS.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    checks = tuple(
        (rule, rule.metric, _crossing(rule), rule.metric == PER_WAIT_METRIC, rule.metric in FLAG_METRICS)
        for rule in rules
    )
    _CHECKS[id(rules)] = (rules, checks)  # keeps `rules` alive, so its id is not reused
    return checks


def _crossing(rule: Rule) -> Callable[[float], bool]:
    """Whether a value that is not ``None`` crosses ``rule``, as one call."""
    if rule.op == "is_true":
        return bool
    compare = _COMPARISONS[rule.op]
    threshold = rule.threshold
    return lambda value: compare(value, threshold)


_COMPARISONS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}


def _hit(rule: Rule, hit_key: str, value: float, occurred_at: int) -> dict[str, Any]:
    return {
        "rule": rule.name,
        "hit_key": hit_key,
        "severity": rule.severity,
        "value": float(value),
        "threshold": 1.0 if rule.op == "is_true" else rule.threshold,
        "occurred_at": occurred_at,
    }
