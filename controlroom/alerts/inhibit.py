"""Inhibition rules as data: a firing alert (the source) mutes the notifications of other alerts (the targets).
Pure code, no I/O.

An inhibition document is ``{"inhibit": [ {...}, ... ]}`` (controlroom/data/inhibit.yaml, or the file named by
ALERT_INHIBIT_FILE). Each rule:
    id: feed_down_mutes_its_series
    source: {rule: feed_down}                        # the alert that explains the others (must be firing)
    target: {rule_type: [staleness, threshold]}      # the alerts it mutes
    equal: [feed]                                    # labels that must be equal on both
Labels: rule, rule_type, feed, category, province, severity, dims (the dims key, "station=s1"; "" for a series
without dims or a feed-wide alert) and dims.<name> (one dimension). A matcher value is a string or a list of
strings (any of them). Errors name the field: ``inhibit[1].target.rule_type[0]: must be one of …``.

Semantics (Alertmanager's): a target alert is inhibited while some *firing* source alert matches the source
matchers and has the same values of every `equal` label. An alert never inhibits itself, and an alert that
matches both sides of a rule is not inhibited by another that also matches both (so "critical mutes warning"
cannot make two alerts mute each other). Inhibited alerts keep their state and history (controlroom/alerts/
lifecycle.py marks their events ``inhibited_by``: the source's alert id); only their notifications are held.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from controlroom.alerts.rules import RULE_TYPES
from controlroom.catalog import NATIONAL, Catalog, read_yaml
from controlroom.errors import ControlRoomError
from controlroom.schema import SEVERITIES, dims_key

LABELS = ("rule", "rule_type", "feed", "category", "province", "severity", "dims")  # and dims.<name>
FIELDS = ("id", "source", "target", "equal", "description")
_ID_RE = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,79}$")


class InhibitError(ControlRoomError):
    """An inhibition document is invalid; the message starts with the path of the offending field."""


class Labelled(Protocol):
    """What inhibition looks at (an AlertState)."""

    fingerprint: str
    rule_id: str
    rule_type: str
    feed: str
    province: str
    severity: str
    dims: dict[str, str]
    state: str


@dataclass(frozen=True, slots=True)
class InhibitRule:
    id: str
    source: Mapping[str, frozenset[str]]
    target: Mapping[str, frozenset[str]]
    equal: tuple[str, ...]
    description: str = ""


def _label_error(name: Any) -> str | None:
    if isinstance(name, str) and (name in LABELS or (name.startswith("dims.") and len(name) > 5)):
        return None
    return f"unknown label (allowed: {', '.join(LABELS)}, dims.<name>)"


def _matchers(raw: Any, where: str, catalog: Catalog) -> dict[str, frozenset[str]]:
    if not isinstance(raw, dict) or not raw:
        raise InhibitError(f"{where}: must be a mapping of label -> value (or list of values), at least one")
    known: dict[str, Iterable[str]] = {
        "rule_type": RULE_TYPES, "feed": catalog.feeds, "category": catalog.categories,
        "province": [*catalog.provinces, NATIONAL, ""], "severity": SEVERITIES}
    out: dict[str, frozenset[str]] = {}
    for name, value in raw.items():
        if (error := _label_error(name)) is not None:
            raise InhibitError(f"{where}.{name}: {error}")
        values = value if isinstance(value, list) else [value]
        if not values:
            raise InhibitError(f"{where}.{name}: an empty list matches nothing")
        for i, v in enumerate(values):
            at = f"{where}.{name}" if not isinstance(value, list) else f"{where}.{name}[{i}]"
            if not isinstance(v, str):
                raise InhibitError(f"{at}: must be a string")
            if name in known and v not in set(known[name]):
                choices = sorted(known[name])
                shown = ", ".join(repr(c) for c in choices[:12]) + (", …" if len(choices) > 12 else "")
                raise InhibitError(f"{at}: must be one of {shown}")
        out[name] = frozenset(values)
    return out


def parse_inhibit_rule(raw: Any, where: str, catalog: Catalog) -> InhibitRule:
    if not isinstance(raw, dict):
        raise InhibitError(f"{where}: must be a mapping")
    for k in raw:
        if k not in FIELDS:
            raise InhibitError(f"{where}.{k}: unknown field (allowed: {', '.join(FIELDS)})")
    rid = raw.get("id")
    if not isinstance(rid, str) or not _ID_RE.match(rid):
        raise InhibitError(f"{where}.id: is required: 1 to 80 characters among a-z, 0-9, '_', '.' and '-'")
    for k in ("source", "target", "equal"):
        if k not in raw:
            raise InhibitError(f"{where}.{k}: is required")
    equal = raw["equal"]
    if not isinstance(equal, list) or not equal:
        # an empty `equal` would let one alert mute every matching alert anywhere: always a mistake here
        raise InhibitError(f"{where}.equal: must be a non-empty list of labels")
    for i, name in enumerate(equal):
        if (error := _label_error(name)) is not None:
            raise InhibitError(f"{where}.equal[{i}]: {error}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise InhibitError(f"{where}.description: must be a string")
    return InhibitRule(id=rid, source=_matchers(raw["source"], f"{where}.source", catalog),
                       target=_matchers(raw["target"], f"{where}.target", catalog),
                       equal=tuple(dict.fromkeys(equal)), description=description)


def parse_inhibit_rules(doc: Any, catalog: Catalog) -> list[InhibitRule]:
    """Validate an inhibition document; raises InhibitError naming the first bad field."""
    if not isinstance(doc, dict):
        raise InhibitError("document: must be a mapping with the key 'inhibit'")
    for k in doc:
        if k != "inhibit":
            raise InhibitError(f"document.{k}: unknown field (allowed: inhibit)")
    raw = doc.get("inhibit")
    if not isinstance(raw, list):
        raise InhibitError("inhibit: must be a list")
    rules: list[InhibitRule] = []
    for i, item in enumerate(raw):
        rule = parse_inhibit_rule(item, f"inhibit[{i}]", catalog)
        if any(r.id == rule.id for r in rules):
            raise InhibitError(f"inhibit[{i}].id: {rule.id!r} is defined twice")
        rules.append(rule)
    return rules


def read_inhibit_rules(path: Path | None, catalog: Catalog) -> list[InhibitRule]:
    """The rules of a YAML file (None: the shipped controlroom/data/inhibit.yaml)."""
    return parse_inhibit_rules(read_yaml(path, "inhibit.yaml", "inhibition rules", InhibitError), catalog)


def labels_of(rule_id: str, rule_type: str, feed: str, province: str, severity: str, dims: Mapping[str, str],
              catalog: Catalog) -> dict[str, str]:
    f = catalog.feeds.get(feed)
    out = {"rule": rule_id, "rule_type": rule_type, "feed": feed, "category": f.category if f else "",
           "province": province, "severity": severity, "dims": dims_key(dict(dims))}
    out.update({f"dims.{k}": v for k, v in dims.items()})
    return out


def _matches(matchers: Mapping[str, frozenset[str]], labels: Mapping[str, str]) -> bool:
    return all(labels.get(name) in values for name, values in matchers.items())


@dataclass
class Inhibitor:
    """The rules and an index of the firing source alerts: rule index -> equal-label values -> fingerprints."""

    rules: list[InhibitRule]
    catalog: Catalog
    _index: list[dict[tuple[str, ...], set[str]]] = field(default_factory=list)
    _where: dict[str, list[tuple[int, tuple[str, ...]]]] = field(default_factory=dict)  # fp -> its index entries
    changed: bool = False  # the set of firing sources changed since the caller last looked

    def __post_init__(self) -> None:
        self._index = [{} for _ in self.rules]

    def labels(self, a: Labelled) -> dict[str, str]:
        return labels_of(a.rule_id, a.rule_type, a.feed, a.province, a.severity, a.dims, self.catalog)

    def may_source(self, labels: Mapping[str, str]) -> bool:
        """Could an alert with these labels inhibit others (so it should be judged before them)?"""
        return any(_matches(r.source, labels) for r in self.rules)

    def observe(self, a: Labelled) -> None:
        """Record an alert's current state: a firing alert matching a rule's source matchers is a source."""
        entries: list[tuple[int, tuple[str, ...]]] = []
        if a.state == "firing":
            labels = self.labels(a)
            for i, r in enumerate(self.rules):
                if _matches(r.source, labels):
                    entries.append((i, tuple(labels.get(name, "") for name in r.equal)))
        old = self._where.get(a.fingerprint, [])
        if old == entries:
            return
        for i, key in old:
            fps = self._index[i].get(key)
            if fps is not None:
                fps.discard(a.fingerprint)
                if not fps:
                    del self._index[i][key]
        for i, key in entries:
            self._index[i].setdefault(key, set()).add(a.fingerprint)
        if entries:
            self._where[a.fingerprint] = entries
        else:
            self._where.pop(a.fingerprint, None)
        self.changed = True

    def rebuild(self, alerts: Iterable[Labelled]) -> None:
        self._index = [{} for _ in self.rules]
        self._where = {}
        for a in alerts:
            self.observe(a)
        self.changed = True

    def inhibitor_of(self, a: Labelled, alerts: Mapping[str, Labelled]) -> tuple[str, str] | None:
        """(inhibit rule id, source fingerprint) of the first firing source that inhibits `a`, or None."""
        labels = self.labels(a)
        for i, r in enumerate(self.rules):
            if not _matches(r.target, labels):
                continue
            candidates = self._index[i].get(tuple(labels.get(name, "") for name in r.equal))
            if not candidates:
                continue
            both = _matches(r.source, labels)
            for fp in sorted(candidates):
                source = alerts.get(fp)
                if fp == a.fingerprint or source is None:
                    continue
                if both and _matches(r.target, self.labels(source)):
                    continue  # two alerts matching both sides do not mute each other
                return r.id, fp
        return None


def inhibition_note(alert_id: str, source: Mapping[str, Any] | None, lang: str = "en") -> str:
    """Why an alert is not notified, for people: "inhibited by <alert id> (<rule> on <feed> <province> <dims>)".
    `source`: the inhibiting alert's rule_id, feed, province and dims (a mapping or a dims key), when known."""
    head = f"inhibited by {alert_id}" if lang == "en" else f"bị ức chế bởi {alert_id}"
    if source is None:
        return head
    dims = source.get("dims")
    dkey = dims_key(dict(dims)) if isinstance(dims, Mapping) else str(dims or source.get("dims_key") or "")
    where = " ".join(str(x) for x in (source.get("feed"), source.get("province"), dkey) if x)
    return f"{head} ({source.get('rule_id')} {'on' if lang == 'en' else 'trên'} {where})"
