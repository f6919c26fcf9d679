"""Communes and wards (level 2 of the post-July-2025 administrative units), from the `vietnam-provinces` library.

The library holds the 34 provinces and their 3,321 communes, wards and special zones with the statistics office's
codes. A commune code on the wire is the office's five digits as text ("00070": Phường Hoàn Kiếm, Hà Nội). Our own
province reference (controlroom/data/provinces.csv: English names, map coordinates, the legacy 63-code mapping)
stays ours; tests/unit/test_communes.py checks that its 34 codes and names equal the library's.
"""

from __future__ import annotations

from dataclasses import dataclass

COMMUNE_DIM = "commune"  # the optional dimension a place-carrying feed's readings name their commune in


@dataclass(frozen=True, slots=True)
class Commune:
    code: str  # five digits, zero-padded
    name: str  # as the library spells it: "Phường Hoàn Kiếm", "Xã …", "Đặc khu …"
    province: str  # two digits, our province code
    kind: str  # xã | phường | đặc khu


@dataclass(frozen=True, slots=True)
class LibraryProvince:
    code: str
    name: str  # our reference's spelling: "Tỉnh …" for a province, the library's own name for a city
    kind: str  # our reference's kind: province | city


def province_code(n: int) -> str:
    return f"{n:02d}"


def commune_code(n: int) -> str:
    return f"{n:05d}"


def library_communes() -> tuple[Commune, ...]:
    """Every commune the library knows, sorted by code. The import is lazy: only a catalog load pays for it."""
    from vietnam_provinces import Ward

    return tuple(sorted((Commune(commune_code(int(w.code)), w.name, province_code(int(w.province_code)),
                                 w.division_type.value) for w in Ward.iter_all()), key=lambda c: c.code))


def library_provinces() -> tuple[LibraryProvince, ...]:
    """The library's 34 provinces, named the way provinces.csv names them (it writes "Tỉnh " before a province)."""
    from vietnam_provinces import Province, VietNamDivisionType

    out = []
    for p in Province.iter_all():
        city = p.division_type is VietNamDivisionType.THANH_PHO_TRUNG_UONG
        out.append(LibraryProvince(province_code(int(p.code)), p.name if city else f"Tỉnh {p.name}",
                                   "city" if city else "province"))
    return tuple(sorted(out, key=lambda p: p.code))
