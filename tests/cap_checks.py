"""Checks of CAP documents by outside implementations: the OASIS CAP 1.2 schema (tests/data/CAP-v1.2.xsd,
validated with xmlschema) and a CAP parser (cap-tools: xsdata bindings generated from that schema)."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import xmlschema
from cap_tools.models import Alert
from xsdata.formats.dataclass.parsers import XmlParser
from xsdata.formats.dataclass.parsers.config import ParserConfig
from xsdata.formats.dataclass.serializers import XmlSerializer

CAP_XSD = Path(__file__).parent / "data" / "CAP-v1.2.xsd"


@cache
def cap_schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(str(CAP_XSD))


def schema_errors(document: bytes) -> list[str]:
    """Every reason the OASIS schema rejects the document (empty: valid)."""
    return [f"{e.path}: {e.reason}" for e in cap_schema().iter_errors(document.decode("utf-8"))]


def parse_cap(document: bytes) -> Alert:
    """The document as cap-tools reads it; an element or value the bindings do not know fails."""
    parser = XmlParser(config=ParserConfig(fail_on_unknown_properties=True, fail_on_unknown_attributes=True))
    return parser.from_bytes(document, Alert)


def serialise_cap(alert: Alert) -> bytes:
    return XmlSerializer().render(alert).encode("utf-8")
