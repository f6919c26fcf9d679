"""Inhibition rules as data: validation errors name the field; matching and the two-sided exclusion."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from controlroom.alerts.inhibit import InhibitError, Inhibitor, parse_inhibit_rules, read_inhibit_rules
from controlroom.catalog import default_catalog

CAT = default_catalog()
OK = {"id": "r", "source": {"rule": "feed_down"}, "target": {"rule_type": ["staleness"]}, "equal": ["feed"]}


@pytest.mark.parametrize(("change", "message"), [
    ({"source": {"colour": "red"}},
     "inhibit[0].source.colour: unknown label (allowed: rule, rule_type, feed, category, province, severity, "
     "dims, dims.<name>)"),
    ({"target": {"rule_type": ["staleness", "nope"]}}, "inhibit[0].target.rule_type[1]: must be one of"),
    ({"target": {"severity": "urgent"}}, "inhibit[0].target.severity: must be one of 'critical', 'info', 'warning'"),
    ({"target": {"feed": 3}}, "inhibit[0].target.feed: must be a string"),
    ({"target": {}}, "inhibit[0].target: must be a mapping of label -> value"),
    ({"equal": []}, "inhibit[0].equal: must be a non-empty list of labels"),
    ({"equal": ["feed", "station"]}, "inhibit[0].equal[1]: unknown label"),
    ({"why": "x"}, "inhibit[0].why: unknown field (allowed: id, source, target, equal, description)"),
    ({"id": "Bad Id"}, "inhibit[0].id: is required"),
])
def test_errors_name_the_field(change: dict[str, Any], message: str) -> None:
    with pytest.raises(InhibitError) as err:
        parse_inhibit_rules({"inhibit": [{**OK, **change}]}, CAT)
    assert str(err.value).startswith(message), str(err.value)


def test_document_shape_and_duplicates() -> None:
    with pytest.raises(InhibitError, match=r"^inhibit\[1\]\.id: 'r' is defined twice"):
        parse_inhibit_rules({"inhibit": [OK, OK]}, CAT)
    with pytest.raises(InhibitError, match=r"^inhibit: must be a list"):
        parse_inhibit_rules({"inhibit": {}}, CAT)
    with pytest.raises(InhibitError, match=r"^inhibit\[0\]\.equal: is required"):
        parse_inhibit_rules({"inhibit": [{k: v for k, v in OK.items() if k != "equal"}]}, CAT)
    assert len(read_inhibit_rules(None, CAT)) == 2  # the shipped file is valid


@dataclass
class A:
    fingerprint: str
    rule_id: str
    severity: str
    province: str = "01"
    feed: str = "water_level"
    rule_type: str = "threshold"
    state: str = "firing"
    dims: dict[str, str] = field(default_factory=lambda: {"station": "s1"})


def test_critical_mutes_warning_but_two_alerts_matching_both_sides_do_not_mute_each_other() -> None:
    rules = parse_inhibit_rules({"inhibit": [{"id": "c", "source": {"severity": ["critical", "warning"]},
                                              "target": {"severity": ["warning", "critical"]},
                                              "equal": ["feed", "province", "dims"]}]}, CAT)
    inh = Inhibitor(rules, CAT)
    x, y = A("x", "a", "critical"), A("y", "b", "warning")
    alerts = {"x": x, "y": y}
    for a in alerts.values():
        inh.observe(a)
    assert inh.inhibitor_of(x, alerts) is None and inh.inhibitor_of(y, alerts) is None  # both match both sides
    strict = Inhibitor(parse_inhibit_rules({"inhibit": [{"id": "c", "source": {"severity": "critical"},
                                                         "target": {"severity": "warning"},
                                                         "equal": ["feed", "province", "dims.station"]}]}, CAT), CAT)
    for a in alerts.values():
        strict.observe(a)
    assert strict.inhibitor_of(y, alerts) == ("c", "x") and strict.inhibitor_of(x, alerts) is None
    z = A("z", "b", "warning", dims={"station": "s2"})  # another station: not the same series
    assert strict.inhibitor_of(z, {**alerts, "z": z}) is None
    x.state = "resolved"  # a source mutes only while firing
    strict.observe(x)
    assert strict.changed and strict.inhibitor_of(y, alerts) is None
