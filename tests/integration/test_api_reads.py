"""/series and /overview on known data in real chDB, written through the sink's own write path."""

from __future__ import annotations

import time

import orjson
import pytest

from controlroom.catalog import default_catalog
from controlroom.schema import window_message
from sinks.rows import Record
from sinks.writer import SinkWriter
from tests.integration.api_client import api_client
from tests.integration.pipeline import sent_record

pytestmark = pytest.mark.integration

MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def reading(eid: str, feed: str, province: str, ts: int, value: float, **dims: str) -> bytes:
    return orjson.dumps({"event_id": eid, "feed": feed, "province": province, "ts": ts, "value": value,
                         "dims": dims, "source": "test"})


def records(items: list[tuple[str, bytes]], now_ms: int) -> list[Record]:
    return [sent_record(topic, 0, i, now_ms, value) for i, (topic, value) in enumerate(items)]


def test_series_raw_and_agg_are_exact(make_settings) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    settings = make_settings(embedded_sink=False)
    with api_client(settings) as (client, keys):
        wh = client.app.state.api.warehouse  # type: ignore[attr-defined]
        sink = SinkWriter(settings, default_catalog(), wh)
        sink.write(records([
            ("feeds.water_level", reading("w1", "water_level", "01", T0 + 1_000, 100, station="s1")),
            ("feeds.water_level", reading("w2", "water_level", "01", T0 + 20_000, 110, station="s1")),
            ("feeds.water_level", reading("w2", "water_level", "01", T0 + 20_000, 110, station="s1")),  # dup
            ("feeds.water_level", reading("w3", "water_level", "01", T0 + 70_000, 130, station="s1")),
            ("feeds.water_level", reading("w4", "water_level", "01", T0 + 5_000, 999, station="s2")),
            ("feeds.hotline_calls", reading("h1", "hotline_calls", "77", T0 + 2_000, 4, line="113")),
            ("feeds.hotline_calls", reading("h2", "hotline_calls", "79", T0 + 3_000, 6, line="115")),
        ], now))
        windows = [window_message(feed="hotline_calls", province="79", dims={"line": "113"}, window_start_ms=T0,
                                  window_s=60, count=c, total=t, vmin=lo, vmax=hi, last=last, last_ts_ms=T0 + ts,
                                  closed_ms=now, source_partition=p)
                   for c, t, lo, hi, last, ts, p in [(2, 10.0, 4.0, 6.0, 6.0, 50_000, 0),
                                                     (1, 3.0, 3.0, 3.0, 3.0, 9_000, 1)]]
        sink.write(records([("agg.1m", orjson.dumps(w)) for w in windows], now))
        h = keys.header("viewer")
        span = {"from": str(T0), "to": str(T0 + 2 * MIN)}

        r = client.get("/series", params={"feed": "water_level", "province": "01", "dims": "station:s1", **span},
                       headers=h).json()
        assert [(p["count"], p["sum"], p["min"], p["max"], p["avg"], p["last"], p["value"]) for p in r["points"]] == [
            (2, 210.0, 100.0, 110.0, 105.0, 110.0, 105.0),  # a gauge's value is its average
            (1, 130.0, 130.0, 130.0, 130.0, 130.0, 130.0)]
        assert r["points"][0]["t"] == "2026-01-01T00:00:00.000Z"

        both = client.get("/series", params={"feed": "water_level", "province": "01", "step": 120, **span},
                          headers=h).json()
        assert [(p["count"], p["max"]) for p in both["points"]] == [(4, 999.0)]  # both stations, one bucket

        calls = client.get("/series", params={"feed": "hotline_calls", "province": "77", **span}, headers=h).json()
        assert calls["province"] == "79"  # a legacy code is answered for its current province
        assert [(p["count"], p["value"]) for p in calls["points"]] == [(2, 10.0)]  # a counter's value is its sum

        agg = client.get("/series", params={"feed": "hotline_calls", "province": "79", "source": "agg", **span},
                         headers=h).json()
        assert [(p["count"], p["sum"], p["min"], p["max"], p["last"]) for p in agg["points"]] == [
            (3, 13.0, 3.0, 6.0, 6.0)]  # two partial windows of one series, summed


@pytest.mark.parametrize(("params", "field"), [
    ({"feed": "weather"}, "feed"), ({"feed": "water_level", "province": "99"}, "province"),
    ({"feed": "water_level", "dims": "river:red"}, "dims"), ({"feed": "water_level", "from": "yesterday"}, "from"),
    ({"feed": "water_level", "step": "0"}, "step"),
])
def test_bad_series_parameters_name_the_field(make_settings, params: dict[str, str], field: str) -> None:  # type: ignore[no-untyped-def]
    with api_client(make_settings(embedded_sink=False)) as (client, keys):
        r = client.get("/series", params=params, headers=keys.header("viewer"))
        assert r.status_code == 422
        assert r.json()["detail"][0]["loc"][-1] == field


def test_overview_counts_reporting_and_silent_series(make_settings) -> None:  # type: ignore[no-untyped-def]
    now = int(time.time() * 1000)
    settings = make_settings(embedded_sink=False)
    with api_client(settings) as (client, keys):
        sink = SinkWriter(settings, default_catalog(), client.app.state.api.warehouse)  # type: ignore[attr-defined]
        sink.write(records([
            ("feeds.water_level", reading("a", "water_level", "01", now - 5_000, 300, station="s1")),
            ("feeds.water_level", reading("b", "water_level", "01", now - 600_000, 310, station="s2")),  # 10 min
            ("feeds.gold_price", reading("c", "gold_price", "00", now - 30_000, 1.5e8, side="buy")),
        ], now))
        o = client.get("/overview", headers=keys.header("viewer")).json()
        t = o["totals"]
        assert (t["feeds"], t["categories"], t["provinces"], t["series_expected"]) == (25, 7, 34, 2146)
        assert (t["series_reporting"], t["feeds_reporting"], t["provinces_reporting"]) == (2, 2, 1)
        assert t["series_silent"] == 2146 - 2
        feeds = {f["id"]: f for f in o["feeds"]}
        assert (feeds["water_level"]["series_reporting"], feeds["water_level"]["series_silent"]) == (1, 67)
        assert feeds["gold_price"]["series_reporting"] == 1
        hanoi = next(p for p in o["provinces"] if p["code"] == "01")
        assert hanoi["series_reporting"] == 1
