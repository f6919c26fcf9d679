"""API SQL builders, parameter validation and /overview assembly: pure, no services."""

from __future__ import annotations

import re

import pytest

from api.overview import SeriesLatest, build_overview, is_reporting, lookback_ms
from api.params import MAX_POINTS, ParamError, build_series_query, parse_dims, parse_time
from api.series_sql import SeriesQuery, overview_series_sql, quality_counts_sql, series_sql
from controlroom.catalog import Catalog
from controlroom.errors import ConfigError

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EVIL = "x'); DROP TABLE readings; --"
PLACEHOLDER = re.compile(r"\{(\w+):(\w+)\}")


def placeholders(sql: str) -> dict[str, str]:
    return dict(PLACEHOLDER.findall(sql))


def test_raw_series_sql_binds_every_value_as_a_parameter() -> None:
    q = SeriesQuery(feed=EVIL, province=EVIL, from_ms=T0, to_ms=T0 + 3_600_000, step_s=300,
                    dims={"station": (EVIL, "s2"), "a": ("b",)})
    sql, params = series_sql("controlroom", q)
    assert EVIL not in sql and "s2" not in sql and "station" not in sql
    assert params == {"step_ms": 300_000, "feed": EVIL, "from_ms": T0, "to_ms": T0 + 3_600_000, "province": EVIL,
                      "dim0_key": "a", "dim0_v0": "b", "dim1_key": "station", "dim1_v0": EVIL, "dim1_v1": "s2"}
    # every parameter is used, typed, and nothing else is
    assert placeholders(sql) == {"step_ms": "Int64", "feed": "String", "from_ms": "Int64", "to_ms": "Int64",
                                 "province": "String", "dim0_key": "String", "dim0_v0": "String",
                                 "dim1_key": "String", "dim1_v0": "String", "dim1_v1": "String"}
    assert "FROM controlroom.readings" in sql and "GROUP BY event_id" in sql  # dedup by event_id
    assert "dims[{dim1_key:String}] IN ({dim1_v0:String}, {dim1_v1:String})" in sql  # values of one key: OR


def test_series_sql_without_province_or_dims_has_no_such_filter() -> None:
    sql, params = series_sql("db1", SeriesQuery(feed="water_level", province=None, from_ms=0, to_ms=60_000, step_s=60))
    assert "province =" not in sql and "dims[" not in sql
    assert set(params) == {"step_ms", "feed", "from_ms", "to_ms"}


def test_agg_series_sql_sums_partial_windows_from_final() -> None:
    q = SeriesQuery(feed="hotline_calls", province="79", from_ms=T0, to_ms=T0 + 600_000, step_s=120,
                    dims={"line": ("113",)}, source="agg")
    sql, params = series_sql("controlroom", q)
    assert "FROM controlroom.agg_1m FINAL" in sql
    assert "sum(count) AS n" in sql and "min(min) AS lo" in sql and "max(max) AS hi" in sql
    assert "window_start >= fromUnixTimestamp64Milli({from_ms:Int64}, 'UTC')" in sql
    assert params["step_ms"] == 120_000 and params["dim0_v0"] == "113" and "113" not in sql


def test_database_name_must_be_an_identifier() -> None:
    q = SeriesQuery(feed="f", province=None, from_ms=0, to_ms=1, step_s=1)
    with pytest.raises(ConfigError, match="identifier"):
        series_sql("db; DROP", q)
    with pytest.raises(ConfigError):
        overview_series_sql("a.b", 0, 0)


def test_overview_and_quality_sql() -> None:
    sql, params = overview_series_sql("controlroom", T0 - 900_000, T0 - 300_000)
    assert params == {"since_ms": T0 - 900_000, "recent_ms": T0 - 300_000}
    assert placeholders(sql) == {"since_ms": "Int64", "recent_ms": "Int64"}
    assert "GROUP BY feed, event_id" in sql  # a duplicated reading counts once
    sql, params = quality_counts_sql("controlroom", T0)
    assert params == {"since_ms": T0} and "uniqExact(dlq_id)" in sql and "uniqExact(event_id)" in sql


# --- parameters --------------------------------------------------------------------------------

def test_parse_time_accepts_iso_with_zone_and_epoch_ms() -> None:
    assert parse_time("2026-01-01T00:00:00Z", "from") == T0
    assert parse_time("2026-01-01T07:00:00+07:00", "from") == T0
    assert parse_time("2026-01-01T07:00:00 07:00", "from") == T0  # '+' decoded to a space by the URL
    assert parse_time(str(T0), "to") == T0
    for bad in ("2026-01-01T00:00:00", "yesterday", ""):
        with pytest.raises(ParamError) as err:
            parse_time(bad, "to")
        assert err.value.field == "to"


def test_parse_dims_groups_values_and_names_the_field() -> None:
    assert parse_dims(["station:s1", "station:s2", "station:s1", "x:y:z"], {"station", "x"}, "f") == {
        "station": ("s1", "s2"), "x": ("y:z",)}
    for bad in (["station"], ["station:"], [":s1"], ["nope:1"]):
        with pytest.raises(ParamError) as err:
            parse_dims(bad, {"station"}, "water_level")
        assert err.value.field == "dims"


def build(catalog: Catalog, **kw: object) -> SeriesQuery:
    args: dict[str, object] = {"feed": "water_level", "province": None, "from_": None, "to": None, "step": 60,
                               "dims": [], "source": "raw", "now_ms": T0 + 30_000}
    args.update(kw)
    return build_series_query(catalog, **args)  # type: ignore[arg-type]


def test_series_query_defaults_to_the_last_hour_aligned_to_steps(catalog: Catalog) -> None:
    q = build(catalog)
    assert (q.from_ms, q.to_ms, q.step_s, q.province, q.source) == (T0 - 3_600_000, T0 + 60_000, 60, None, "raw")
    q = build(catalog, from_=str(T0 + 1), to=str(T0 + 299_999), step=300)
    assert (q.from_ms, q.to_ms) == (T0, T0 + 300_000)


def test_series_query_maps_legacy_province_codes(catalog: Catalog) -> None:
    assert build(catalog, province="02").province == "08"  # Hà Giang merged into Tuyên Quang
    assert build(catalog, province="79").province == "79"
    assert build(catalog, feed="gold_price", province="00").province == "00"


@pytest.mark.parametrize(("kw", "field"), [
    ({"feed": "nope"}, "feed"),
    ({"province": "99"}, "province"),
    ({"feed": "gold_price", "province": "01"}, "province"),
    ({"step": 0}, "step"),
    ({"step": 86_401}, "step"),
    ({"step": 90, "source": "agg"}, "step"),
    ({"from_": str(T0), "to": str(T0)}, "from"),
    ({"from_": "soon"}, "from"),
    ({"from_": "0", "to": str(T0), "step": 1}, "step"),  # far too many points
    ({"dims": ["line:113"]}, "dims"),
])
def test_series_query_rejects_bad_parameters_naming_the_field(catalog: Catalog, kw: dict[str, object],
                                                              field: str) -> None:
    with pytest.raises(ParamError) as err:
        build(catalog, **kw)
    assert err.value.field == field
    assert err.value.detail()[0]["loc"] == ["query", field]


def test_series_query_point_cap_is_inclusive(catalog: Catalog) -> None:
    q = build(catalog, from_=str(T0), to=str(T0 + MAX_POINTS * 1000), step=1)
    assert (q.to_ms - q.from_ms) // 1000 == MAX_POINTS
    q = build(catalog, step=120, source="agg", dims=["station:s1", "station:s2"])
    assert q.dims == {"station": ("s1", "s2")} and q.source == "agg"


# --- /overview assembly ---------------------------------------------------------------------------

def row(feed: str, province: str, dkey: str, last_ms: int, value: float, n: int = 1,
        total: float | None = None) -> SeriesLatest:
    t = value * n if total is None else total
    return SeriesLatest(feed, province, dkey, last_ms, value, n, t, value if n else None, value if n else None)


def test_overview_counts_reporting_and_silent_series(catalog: Catalog) -> None:
    now = T0
    assert lookback_ms(catalog) == 900_000
    rows = [
        row("water_level", "01", "station=s1", now - 179_000, 100.0),  # cadence 60 s: reporting (< 180 s)
        row("water_level", "01", "station=s2", now - 181_000, 300.0, n=0),  # silent: just past 3 cadences
        row("water_level", "79", "station=s1", now - 10_000, 200.0, n=2, total=390.0),
        row("hotline_calls", "79", "line=113", now - 5_000, 7.0, n=3, total=15.0),
        row("hotline_calls", "79", "line=114", now - 5_000, 3.0),
        row("hotline_calls", "79", "", now - 5_000, 1.0),  # partial dims: not an expected series
        row("gold_price", "00", "side=buy", now - 1_000, 80_000_000.0),
    ]
    out = build_overview(catalog, rows, now_ms=now, dead_letters_recent=4, late_recent=1)
    expected = sum(1 for _ in catalog.iter_series())
    t = out["totals"]
    assert t == {"feeds": 25, "feeds_reporting": 3, "categories": 7, "categories_reporting": 3, "provinces": 34,
                 "provinces_reporting": 2, "series_expected": expected, "series_reporting": 5,
                 "series_silent": expected - 5, "series_unexpected": 1, "readings_5m": 1 + 0 + 2 + 3 + 1 + 1 + 1,
                 "dead_letters_5m": 4, "late_5m": 1}
    feeds = {f["id"]: f for f in out["feeds"]}
    wl = feeds["water_level"]
    wl_expected = len(catalog.feeds["water_level"].dim_combinations()) * 34
    assert (wl["series_expected"], wl["series_reporting"], wl["series_silent"]) == (wl_expected, 2, wl_expected - 2)
    assert wl["latest_value"] == 150.0  # gauge: mean of the latest of each reporting series (s2 is silent)
    assert wl["last_5m"] == {"count": 3, "sum": 490.0, "avg": 490.0 / 3, "min": 100.0, "max": 200.0}
    assert wl["last_ts"] == "2025-12-31T23:59:50.000Z"
    assert feeds["hotline_calls"]["latest_value"] == 11.0  # counter: sum, the partial-dims series included
    assert feeds["hotline_calls"]["series_reporting"] == 2
    assert feeds["epidemic_cases"]["series_reporting"] == 0 and feeds["epidemic_cases"]["latest_value"] is None
    assert feeds["epidemic_cases"]["last_5m"] == {"count": 0, "sum": 0.0, "avg": None, "min": None, "max": None}
    provinces = {p["code"]: p for p in out["provinces"]}
    assert len(provinces) == 34 and "00" not in provinces
    assert (provinces["79"]["feeds_reporting"], provinces["79"]["series_reporting"]) == (2, 3)
    assert provinces["01"]["series_reporting"] == 1 and provinces["04"]["series_reporting"] == 0
    assert provinces["01"]["series_silent"] == provinces["04"]["series_silent"] - 1
    cats = {c["id"]: c for c in out["categories"]}
    assert cats["international_indices"]["feeds_reporting"] == 1
    assert cats["international_indices"]["series_reporting"] == 1
    assert sum(c["series_reporting"] + c["series_silent"] for c in cats.values()) == expected
    assert out["generated_at"] == "2026-01-01T00:00:00.000Z"


def test_reporting_boundary_is_three_cadences(catalog: Catalog) -> None:
    f = catalog.feeds["dvc_portal_visits"]  # cadence 10 s
    assert is_reporting(f, T0 - 30_000, T0) and not is_reporting(f, T0 - 30_001, T0)
    assert not is_reporting(f, None, T0)
