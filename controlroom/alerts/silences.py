"""Silences: which alert fields a silence may match, and the one matcher. Pure code.

A silence holds ``matchers`` (field → exact value; ``dims.<name>`` matches one dimension) and a time range
``[starts_ms, ends_ms)``. The API validates matchers with `matcher_field_error` before publishing a silence;
the alerter validates them again (the control topic is its input) and asks `Silence.covers` per alert.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

SILENCE_FIELDS = ("fingerprint", "rule_id", "rule_type", "feed", "province", "severity")  # and dims.<name>


class Silenceable(Protocol):
    """What a silence looks at: the SILENCE_FIELDS as attributes, and the series' dims."""

    dims: dict[str, str]


def matcher_field_error(name: str) -> str | None:
    """None when a silence may match on `name`; otherwise why not (the message of a 422 / LifecycleError)."""
    if name in SILENCE_FIELDS or (name.startswith("dims.") and len(name) > 5):
        return None
    return f"unknown field (allowed: {', '.join(SILENCE_FIELDS)}, dims.<name>)"


@dataclass(frozen=True, slots=True)
class Silence:
    id: str
    matchers: dict[str, str]
    starts_ms: int
    ends_ms: int

    def covers(self, a: Silenceable, now_ms: int) -> bool:
        if not self.starts_ms <= now_ms < self.ends_ms:
            return False
        for name, want in self.matchers.items():
            have = a.dims.get(name[5:]) if name.startswith("dims.") else getattr(a, name)
            if have != want:
                return False
        return True
