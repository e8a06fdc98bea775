"""The operations dashboard's reading of the friction rules matches the rules file.

``dashboards.operations.RULES`` names each default rule for people, with its limit and
the unit of its measured value (the dashboards may not import the journey package);
this holds it to ``journey/friction_rules.yaml``, so a changed threshold or a new rule
fails here rather than showing a wrong limit in the friction feed.
"""

from __future__ import annotations

from dashboards.operations import RULES
from journey.friction import load_rules

OPS = {">": ">", ">=": "≥", "<": "<", "<=": "≤"}


def test_every_default_rule_reads_with_its_own_limit_and_unit() -> None:
    rules = load_rules()
    assert list(RULES) == [rule.name for rule in rules]
    for rule in rules:
        name, limit, unit = RULES[rule.name]
        assert name and "_" not in name
        if rule.op == "is_true":
            assert (limit, unit) == ("", ""), rule.name  # yes/no: nothing measured, no limit
        else:
            minutes = rule.metric.endswith("_min")
            assert unit == ("min" if minutes else "count"), rule.name
            assert limit == f"{OPS[rule.op]} {rule.threshold:g}" + (" min" if minutes else ""), rule.name
