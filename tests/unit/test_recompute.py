"""Which stored windows the sink may recompute now, and how far it may commit (pure bookkeeping)."""

from __future__ import annotations

from sinks.recompute import Trigger, commit_caps, recompute_sql, split_ready

T0 = 1_767_225_600_000


def trig(max_offset: int, at_offset: int, partition: int = 0, province: str = "01") -> Trigger:
    return Trigger("water_level", province, "station=s1", T0, "feeds.water_level", partition, max_offset,
                   ("agg.1m", 2, at_offset))


def test_a_window_waits_until_its_raw_readings_are_stored_through_its_max_offset() -> None:
    a, b, c = trig(10, 1), trig(11, 2), trig(5, 3, partition=1)
    ready, waiting = split_ready([a, b, c], {("feeds.water_level", 0): 10})
    assert ready == [a] and waiting == [b, c]  # partition 1: nothing known stored yet


def test_commits_stop_before_the_first_waiting_trigger_of_each_partition() -> None:
    waiting = [trig(11, 7), trig(12, 4), Trigger("x", "01", "", T0, "feeds.x", 0, 1, ("feeds.late", 0, 9))]
    assert commit_caps(waiting) == {("agg.1m", 2): 4, ("feeds.late", 0): 9}


def test_one_statement_per_batch_each_window_once_and_values_quoted() -> None:
    evil = Trigger("water_level", "01", "station=it's", T0, "feeds.water_level", 0, 3, ("agg.1m", 0, 1))
    sql = recompute_sql("controlroom", [trig(10, 1), trig(12, 2), evil], 60)
    assert sql is not None and sql.count("INSERT INTO controlroom.agg_1m") == 1
    assert sql.count(f"'station=s1', {T0}, 0") == 1  # two triggers of one window: recomputed once
    assert "'station=it\\'s'" in sql
    assert recompute_sql("controlroom", [], 60) is None


def test_thousands_of_windows_are_split_into_statements_clickhouse_accepts() -> None:
    """A worker catching up closes thousands of windows at once: each statement stays under ClickHouse's
    max_query_size (256 KiB) with the catalog's longest names, and every window is in exactly one of them."""
    from controlroom.catalog import default_catalog
    from sinks.healer import WindowKey
    from sinks.recompute import WINDOWS_PER_QUERY, check_sql, recompute_sqls

    catalog = default_catalog()
    feed, province, dims = max(catalog.iter_series(), key=lambda s: len(s[0].id) + len(s[1]) + len(str(s[2])))
    dims_key = "|".join(f"{k}={v}" for k, v in sorted(dims.items())) + "x" * 40  # longer than any real one
    n = 2 * WINDOWS_PER_QUERY + 500
    triggers = [Trigger(feed.id, province, dims_key, T0 + i * 60_000, feed.topic, 3, 10**12, ("agg.1m", 3, i))
                for i in range(n)]
    sqls = recompute_sqls("controlroom", triggers + triggers[:10], 60)  # repeated triggers: one window each
    assert len(sqls) == 3
    assert all(len(sql.encode()) < 262_144 for sql in sqls)
    assert sum(sql.count(f"'{dims_key}', ") for sql in sqls) == n
    keys: list[WindowKey] = [(feed.id, province, dims_key, T0 + i * 60_000, feed.topic, 3)
                             for i in range(WINDOWS_PER_QUERY)]
    both = check_sql("controlroom", keys, 60)
    assert both is not None and all(len(sql.encode()) < 262_144 for sql in both)
