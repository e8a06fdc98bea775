"""How the friction rules read on the dashboards: names for people, limits, units.

The rules themselves (metric, comparison, threshold) live in ``journey/friction_rules.yaml``;
this module only says how a rule reads, and builds the SQL that turns a ``rule`` column
into those words.
"""

from __future__ import annotations

from journey.friction import Rule, load_rules

# What each friction rule (journey/friction_rules.yaml) is called by people; a rule not
# named here reads as its name with spaces. Its limit and unit come from the rules file.
RULE_NAMES = {
    "arrival_to_checkin": "Arrival to check-in",
    "drop_count": "Drops",
    "no_show": "No-show",
}
COMPARISONS = {">": ">", ">=": "≥", "<": "<", "<=": "≤"}


def rule_reading(rule: Rule) -> tuple[str, str, str]:
    """How ``rule`` reads: its name for people, its limit, and its measured value's unit
    (minutes, a count, or nothing for a yes/no rule such as a no-show: it happened).

    >>> from journey.friction import load_rules
    >>> [rule_reading(rule) for rule in load_rules() if rule.name in ("lobby_wait", "drop_count", "no_show")]
    [('Lobby wait', '> 20 min', 'min'), ('Drops', '≥ 2', 'count'), ('No-show', '', '')]
    """
    name = RULE_NAMES.get(rule.name, rule.name.replace("_", " ").capitalize())
    if rule.op == "is_true":
        return name, "", ""
    unit = "min" if rule.metric.endswith("_min") else "count"
    return name, f"{COMPARISONS[rule.op]} {rule.threshold:g}" + (" min" if unit == "min" else ""), unit


RULES = {rule.name: rule_reading(rule) for rule in load_rules()}


def by_rule(texts: dict[str, str], otherwise: str) -> str:
    """SQL: ``texts[rule]``, or the ``otherwise`` expression for a rule not in the defaults."""
    names = ", ".join(f"'{name}'" for name in texts)
    values = ", ".join(f"'{text}'" for text in texts.values())
    return f"transform(rule, [{names}], [{values}], {otherwise})"


RULE_LABEL = by_rule({rule: name for rule, (name, _, _) in RULES.items()}, "replaceAll(rule, '_', ' ')")
RULE_LIMIT = by_rule({rule: limit for rule, (_, limit, _) in RULES.items()}, "toString(threshold)")
MINUTE_RULES = ", ".join(f"'{rule}'" for rule, (_, _, unit) in RULES.items() if unit == "min")
YES_NO_RULES = ", ".join(f"'{rule}'" for rule, (_, _, unit) in RULES.items() if not unit)
# A yes/no rule (no-show) has no measured value to show: it happened.
MEASURED = (
    f"multiIf(rule IN ({YES_NO_RULES}), '', rule IN ({MINUTE_RULES}),"
    " concat(toString(round(value, 1)), ' min'), toString(round(value, 1)))"
)
