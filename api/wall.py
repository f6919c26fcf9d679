"""The live wall's snapshot, assembled from plain data (pure: no I/O, unit-testable).

One snapshot holds every panel of the national wall: a tile per category (headline figure + trend), the
34 provinces placed on a map and coloured by their worst *firing* alert, the firing alerts, the feed-health
grid, the public-service on-time rate and the open incidents (their province highlighted on the map). Its
figures are /overview's own (api.overview.read_overview), the
alerts are /alerts' own query (api.alerts_sql.alerts_sql, state firing) and the trends are /series' own query
on the 1-minute table (api.series_sql.series_sql, source agg), the incidents are /incidents' own query
(api.incidents_sql.incidents_sql, open and acknowledged): api/wall_stream.py runs those queries, once per
refresh per API process, and hands the rows to `build_wall`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from api.agencies_sql import vn_day
from controlroom.alerts.incident_rules import incident_type_name
from controlroom.alerts.inhibit import inhibition_note
from controlroom.catalog import HEADLINE_FEEDS, Catalog, Feed
from controlroom.indicators import Period, plan_vs_actual
from controlroom.reports import Form, due_periods
from controlroom.schema import ms_to_iso

SEVERITY_ORDER = ("info", "warning", "critical")
TREND_MINUTES = 60  # the last hour of closed 1-minute windows, drawn as a sparkline on each tile
TREND_HALF = 5  # trend arrow: the last 5 closed minutes against the 5 before them
ALERTS_SHOWN = 50  # rows of the alerts table carried by a snapshot (the map uses every firing alert)
ALERTS_READ = 2000  # firing alerts read per refresh; beyond that the wall says the list is cut
INCIDENTS_SHOWN = 20  # rows of the incidents tile carried by a snapshot (the map highlights every one read)
INCIDENTS_READ = 500  # active incidents read per refresh
INCIDENT_STATES = ("open", "acknowledged")  # what the tile shows: /incidents' default (state=active)
MAP_W, MAP_H, MAP_PAD = 420.0, 760.0, 24.0  # SVG viewBox of the province map


@dataclass(frozen=True, slots=True)
class TrendPoint:
    t_ms: int
    value: float | None  # None: no closed window that minute (a gap in the line, not a zero)


def trend_window(now_ms: int) -> tuple[int, int]:
    """[from, to) of the sparklines: the last TREND_MINUTES closed minutes before now."""
    to_ms = now_ms - now_ms % 60_000
    return to_ms - TREND_MINUTES * 60_000, to_ms


def trend_points(rows: list[dict[str, Any]], kind: str, from_ms: int | None = None) -> list[TrendPoint]:
    """trends_sql (or series_sql) rows → per-minute values, as /series computes `value`: sum for counters, average
    for gauges. With `from_ms`: exactly TREND_MINUTES points from there, a minute without a window as None."""
    values = {}
    for r in rows:
        n, total = int(r["n"]), float(r["total"])
        values[int(r["t"])] = total if kind == "counter" else total / n if n else 0.0
    if from_ms is None:
        return [TrendPoint(t, v) for t, v in values.items()]
    return [TrendPoint(t, values.get(t)) for t in range(from_ms, from_ms + TREND_MINUTES * 60_000, 60_000)]


def trend_delta_pct(all_points: list[TrendPoint], kind: str) -> float | None:
    """Change of the last TREND_HALF minutes with a window against the TREND_HALF before them, in percent (None:
    no basis)."""
    points = [p for p in all_points if p.value is not None]
    if len(points) < 2 * TREND_HALF:
        return None
    recent = [p.value or 0.0 for p in points[-TREND_HALF:]]
    before = [p.value or 0.0 for p in points[-2 * TREND_HALF:-TREND_HALF]]
    a, b = (sum(recent), sum(before)) if kind == "counter" else (sum(recent) / TREND_HALF, sum(before) / TREND_HALF)
    return None if b == 0 else round(100.0 * (a - b) / abs(b), 1)


def project(catalog: Catalog) -> dict[str, tuple[float, float]]:
    """Province centres → SVG coordinates (equirectangular, longitude scaled by cos of the mean latitude)."""
    lats = [p.lat for p in catalog.provinces.values()]
    lons = [p.lon for p in catalog.provinces.values()]
    k = math.cos(math.radians((min(lats) + max(lats)) / 2))
    w, h = (max(lons) - min(lons)) * k, max(lats) - min(lats)
    # a key scoped to one province has a map of one point: no extent to scale (it was a division by zero)
    scale = min((MAP_W - 2 * MAP_PAD) / w if w else math.inf, (MAP_H - 2 * MAP_PAD) / h if h else math.inf)
    scale = 1.0 if scale == math.inf else scale
    x0 = (MAP_W - w * scale) / 2
    y0 = (MAP_H - h * scale) / 2
    return {p.code: (round(x0 + (p.lon - min(lons)) * k * scale, 1), round(y0 + (max(lats) - p.lat) * scale, 1))
            for p in catalog.provinces.values()}


def worst(severities: list[str]) -> str | None:
    known = [s for s in severities if s in SEVERITY_ORDER]
    return max(known, key=SEVERITY_ORDER.index) if known else None


def _inhibition(a: dict[str, Any], by_id: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """An inhibited alert says what mutes it (its source is firing too, so it is among the rows read)."""
    by = a.get("inhibited_by") or None
    if by is None:
        return {"inhibited_by": None, "inhibited_vi": None, "inhibited_en": None}
    source = by_id.get(str(by))
    return {"inhibited_by": by, "inhibited_vi": inhibition_note(str(by), source, "vi"),
            "inhibited_en": inhibition_note(str(by), source, "en")}


def province_name(catalog: Catalog, code: str, lang: str) -> str:
    p = catalog.provinces.get(code)
    if p is None:
        return "Toàn quốc" if lang == "vi" else "National"
    return p.name_vi if lang == "vi" else p.name_en


def _iso_ms(iso: str) -> int:
    return int(datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() * 1000)


def wall_incidents(catalog: Catalog, rows: list[dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
    """incidents_sql rows (open and acknowledged, worst and newest first) → the tile's rows."""
    out = []
    for r in rows:
        if r["state"] not in INCIDENT_STATES:
            continue
        code = str(r["province"])
        members = r["members"]
        members = orjson.loads(members or "[]") if isinstance(members, str | bytes) else list(members or [])
        opened = int(r["opened_at"])
        out.append({
            "incident_id": r["incident_id"], "type": r["type"], "severity": r["severity"], "state": r["state"],
            "province": code, "province_vi": province_name(catalog, code, "vi"),
            "province_en": province_name(catalog, code, "en"), "on_map": code in catalog.provinces,
            "title_vi": r["title_vi"], "title_en": r["title_en"],
            "type_vi": incident_type_name(str(r["title_vi"]), catalog, code, "vi"),
            "type_en": incident_type_name(str(r["title_en"]), catalog, code, "en"),
            "alerts": len(members), "alerts_firing": sum(1 for m in members if m.get("state") == "firing"),
            "signals": list(r.get("signals") or []), "assignee": r.get("assignee") or "",
            "opened_at": ms_to_iso(opened), "age_s": max(0, (now_ms - opened) // 1000),
        })
    return out


def feed_tile(meta: Feed, figures: dict[str, Any], trend_rows: list[dict[str, Any]],
              trend_from_ms: int | None) -> dict[str, Any]:
    """A feed's tile, national or of one province: its headline figure (/overview's: the 5-minute total of a
    counter, the latest value of a gauge) and its sparkline (per-minute values of the last hour)."""
    points = trend_points(trend_rows, meta.kind, trend_from_ms)
    return {
        "feed": meta.id, "feed_name_vi": meta.name_vi, "feed_name_en": meta.name_en, "unit": meta.unit,
        "kind": meta.kind, "basis": "sum_5m" if meta.kind == "counter" else "latest",
        "value": figures["last_5m"]["sum"] if meta.kind == "counter" else figures["latest_value"],
        "trend": [[p.t_ms, p.value] for p in points], "trend_delta_pct": trend_delta_pct(points, meta.kind),
    }


def wall_alerts(catalog: Catalog, firing: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """alerts_sql rows (firing, worst first) → the alerts table's rows."""
    by_id = {str(a["alert_id"]): a for a in firing}
    return [{
        "alert_id": a["alert_id"], "severity": a["severity"], "rule_id": a["rule_id"], "feed": a["feed"],
        "province": a["province"], "province_vi": province_name(catalog, str(a["province"]), "vi"),
        "province_en": province_name(catalog, str(a["province"]), "en"), "summary_vi": a["summary_vi"],
        "summary_en": a["summary_en"], "since": ms_to_iso(int(a["starts_at_ms"])), "acked": bool(a.get("ack_by")),
        **_inhibition(a, by_id),
    } for a in firing[:ALERTS_SHOWN]]


# --- the periodic half (issue 16): reports due / overdue, headline indicators against their plan ------------

def report_periods(forms: Mapping[str, Form], now_ms: int) -> list[tuple[Form, str, Period]]:
    """(form, stage, period) the reports tile counts: per form, the ended period whose deadline is still ahead
    ("due", if any) and the latest period whose deadline has passed ("overdue")."""
    out: list[tuple[Form, str, Period]] = []
    for form in forms.values():
        due, overdue = due_periods(form, now_ms)
        if due is not None:
            out.append((form, "due", due))
        out.append((form, "overdue", overdue))
    return out


def reports_tile(periods: list[tuple[Form, str, Period]], units: list[str], rows: list[dict[str, Any]],
                 now_ms: int) -> dict[str, Any]:
    """submitted_reports_sql rows of `periods` → per form and stage: expected (the units), submitted, on time, missing
    (as GET /reports/compliance counts them); and the totals per stage. `units`: 00 and the provinces shown."""
    done = {(str(r["form"]), str(r["period"]), str(r["unit"])): bool(r["on_time"]) for r in rows}
    forms: list[dict[str, Any]] = []
    for form, stage, period in periods:
        sent = [done[k] for u in units if (k := (form.code, period.label, u)) in done]
        deadline = form.deadline_ms(period)
        forms.append({"form": form.code, "name_vi": form.name_vi, "name_en": form.name_en, "stage": stage,
                      "period": period.label, "deadline": ms_to_iso(deadline),
                      "days": round(abs(deadline - now_ms) / 86_400_000, 1), "expected": len(units),
                      "submitted": len(sent), "on_time": sum(sent), "missing": len(units) - len(sent)})
    forms.sort(key=lambda f: (f["stage"] != "due", f["deadline"] if f["stage"] == "due" else "", -f["missing"]))

    def total(stage: str) -> dict[str, Any]:
        mine = [f for f in forms if f["stage"] == stage]
        return {"forms": len(mine), **{k: sum(f[k] for f in mine) for k in ("expected", "submitted", "on_time",
                                                                            "missing")},
                "next_deadline": min((f["deadline"] for f in mine), default=None) if stage == "due" else None}

    return {"due": total("due"), "overdue": total("overdue"), "forms": forms}


def indicator_rows(rows: list[dict[str, Any]], now_ms: int) -> list[dict[str, Any]]:
    """Plan versus actual per headline indicator and unit (rows: indicator, unit, year, periods, values, target),
    with the share of the year elapsed: a summed indicator on plan has reached about that share of its target."""
    out = []
    for r in rows:
        ind, periods = r["indicator"], r["periods"]
        year_start, year_end = periods[0].start_ms, periods[-1].end_ms
        figures = plan_vs_actual(ind, periods, r["values"], r["target"], now_ms)
        out.append({"indicator": ind.id, "name_vi": ind.name_vi, "name_en": ind.name_en, "unit": ind.unit,
                    "aggregation": ind.aggregation, "province": r["unit"], "year": r["year"],
                    "year_elapsed_pct": round(100.0 * (now_ms - year_start) / (year_end - year_start), 1),
                    **{k: figures[k] for k in ("target", "actual_to_date", "actual_pct_of_plan", "projection",
                                               "projection_pct_of_plan")}})
    return out


def build_wall(catalog: Catalog, overview: dict[str, Any], firing: list[dict[str, Any]],
               trends: dict[str, list[dict[str, Any]]], *, refresh_s: float,
               incidents: list[dict[str, Any]] | None = None, trend_from_ms: int | None = None,
               periodic: dict[str, Any] | None = None) -> dict[str, Any]:
    """The wall snapshot. `overview`: read_overview's result; `firing`: alerts_sql rows (state firing, worst
    first); `trends`: trends_sql rows per headline feed, from `trend_from_ms` (trend_window); `incidents`:
    incidents_sql rows (open and acknowledged, worst and newest first); `periodic`: {"reports": reports_tile,
    "indicators": indicator_rows}, the periodic half (none: empty)."""
    feeds = {f["id"]: f for f in overview["feeds"]}
    truncated = len(firing) >= ALERTS_READ
    # a report not submitted is the reports tile's to show: on the map it would drown what is happening now
    report_alerts = sum(1 for a in firing if a.get("rule_type") == "report_deadline")
    firing = [a for a in firing if a.get("rule_type") != "report_deadline"]
    tiles = []
    for cat in overview["categories"]:
        feed_id = HEADLINE_FEEDS[cat["id"]]
        tiles.append({
            "id": cat["id"], "name_vi": cat["name_vi"], "name_en": cat["name_en"],
            **feed_tile(catalog.feeds[feed_id], feeds[feed_id], trends.get(feed_id, []), trend_from_ms),
            "feeds": len(cat["feeds"]), "feeds_reporting": cat["feeds_reporting"],
        })

    by_province: dict[str, list[str]] = {}
    for a in firing:
        by_province.setdefault(str(a["province"]), []).append(str(a["severity"]))
    active = wall_incidents(catalog, incidents or [], _iso_ms(overview["generated_at"]))
    incident_ids: dict[str, list[str]] = {}
    for inc in active:
        incident_ids.setdefault(inc["province"], []).append(inc["incident_id"])
    xy = project(catalog)
    provinces = [{
        "code": p["code"], "name_vi": p["name_vi"], "name_en": p["name_en"], "x": xy[p["code"]][0],
        "y": xy[p["code"]][1], "severity": worst(by_province.get(p["code"], [])),
        "firing": len(by_province.get(p["code"], [])), "series_reporting": p["series_reporting"],
        "series_silent": p["series_silent"], "incidents": incident_ids.get(p["code"], []),
    } for p in overview["provinces"]]

    alerts = wall_alerts(catalog, firing)

    health = {"reporting": 0, "degraded": 0, "silent": 0}
    for f in overview["feeds"]:
        health[f["status"]] += 1
    return {
        "generated_at": overview["generated_at"],
        "refresh_s": refresh_s,
        "totals": overview["totals"],
        "public_services": overview["public_services"],
        "tiles": tiles,
        "map": {"width": MAP_W, "height": MAP_H},
        "provinces": provinces,
        "alerts": alerts,
        "alerts_firing": len(firing),
        "alerts_by_severity": {s: sum(1 for a in firing if a["severity"] == s) for s in SEVERITY_ORDER},
        "alerts_truncated": truncated,
        "report_alerts_firing": report_alerts,
        "incidents": active[:INCIDENTS_SHOWN],
        "incidents_active": len(active),
        "feeds": [{"id": f["id"], "name_vi": f["name_vi"], "name_en": f["name_en"], "category": f["category"],
                   "status": f["status"], "series_expected": f["series_expected"],
                   "series_reporting": f["series_reporting"], "last_ts": f["last_ts"]} for f in overview["feeds"]],
        "health": health,
        "reports": (periodic or {}).get("reports"),
        "indicators": (periodic or {}).get("indicators", []),
    }


COMMUNES_SHOWN = 8  # communes listed per feed on a province page, the busiest first (what fits its panel)


def place_feeds(catalog: Catalog) -> list[str]:
    """The feeds whose readings may name a commune (the province page's "where inside the province")."""
    return [f.id for f in catalog.feeds.values() if f.communes]


def province_communes(catalog: Catalog, code: str, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """communes_sql rows → per place feed: its communes, busiest first (count of readings, and the readings' sum
    for a counter, their average for a gauge)."""
    by_feed: dict[str, list[dict[str, Any]]] = {f: [] for f in place_feeds(catalog)}
    for r in rows:
        feed, commune = str(r["feed"]), catalog.communes.get(str(r["commune"]))
        if feed not in by_feed or commune is None or commune.province != code:
            continue
        n, total = int(r["n"]), float(r["total"])
        by_feed[feed].append({"code": commune.code, "name": commune.name, "kind": commune.kind, "readings": n,
                              "value": total if catalog.feeds[feed].kind == "counter" else round(total / n, 2),
                              "last": ms_to_iso(int(r["last_ms"]))})
    out = []
    for feed_id, places in by_feed.items():
        meta = catalog.feeds[feed_id]
        out.append({"feed": feed_id, "name_vi": meta.name_vi, "name_en": meta.name_en, "unit": meta.unit,
                    "kind": meta.kind, "communes_reporting": len(places),
                    "communes_in_province": len(catalog.communes_by_province.get(code, ())),
                    "communes": places[:COMMUNES_SHOWN]})
    return out


def build_province(catalog: Catalog, code: str, feeds: list[dict[str, Any]], firing: list[dict[str, Any]],
                   trends: dict[str, list[dict[str, Any]]], communes: list[dict[str, Any]], *, generated_at: str,
                   refresh_s: float, trend_from_ms: int, incidents: list[dict[str, Any]] | None = None,
                   agencies: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """One province's page: a tile per provincial feed (`feeds`: overview.feed_figures for the province; the
    sparkline from `trends`, trends_sql rows of the province per feed), its firing alerts and open incidents
    (alerts_sql / incidents_sql rows of the province), and where inside it (`communes`: communes_sql rows);
    `agencies`: its center's row of the agencies view (wall_agencies)."""
    p = catalog.provinces[code]
    tiles = [{**feed_tile(catalog.feeds[f["id"]], f, trends.get(f["id"], []), trend_from_ms),
              "category": f["category"], "status": f["status"], "series_expected": f["series_expected"],
              "series_reporting": f["series_reporting"], "last_ts": f["last_ts"]} for f in feeds]
    active = wall_incidents(catalog, incidents or [], _iso_ms(generated_at))
    return {
        "generated_at": generated_at, "refresh_s": refresh_s,
        "province": {"code": code, "name_vi": p.name_vi, "name_en": p.name_en, "kind": p.kind,
                     "legacy_codes": list(p.legacy_codes),
                     "communes": len(catalog.communes_by_province.get(code, ()))},
        "totals": {"feeds": len(tiles), "feeds_reporting": sum(1 for t in tiles if t["series_reporting"]),
                   "series_expected": sum(t["series_expected"] for t in tiles),
                   "series_reporting": sum(t["series_reporting"] for t in tiles)},
        "tiles": tiles,
        "alerts": wall_alerts(catalog, firing),
        "alerts_firing": len(firing),
        "alerts_by_severity": {s: sum(1 for a in firing if a["severity"] == s) for s in SEVERITY_ORDER},
        "severity": worst([str(a["severity"]) for a in firing]),
        "incidents": active[:INCIDENTS_SHOWN],
        "incidents_active": len(active),
        "places": province_communes(catalog, code, communes),
        "agencies": agencies or [],
    }


AGENCY_TREND_DAYS = 7  # the agencies view: each body's daily score over the last week


def trend_days(now_ms: int) -> list[str]:
    """The Vietnamese days of the agencies' trend, oldest first, today last."""
    return [vn_day(now_ms, back) for back in range(AGENCY_TREND_DAYS - 1, -1, -1)]


def wall_agencies(catalog: Catalog, daily: list[dict[str, Any]], contracts: list[dict[str, Any]], days: list[str],
                  provinces: frozenset[str] | None = None) -> list[dict[str, Any]]:
    """One row per body with a contract (of `provinces` only, when given: a province's centers), worst score today
    first, those not judged today last. `daily`: daily_scores_sql rows over `days`; `contracts`: contract_day_sql
    rows of today (the last of `days`)."""
    scores: dict[str, dict[str, float]] = {}
    for r in daily:
        scores.setdefault(str(r["agency"]), {})[str(r["day"])] = float(r["score"])
    worst: dict[str, dict[str, Any]] = {}
    for r in contracts:
        if r["quality"] is not None and (r["agency"] not in worst or r["quality"] < worst[r["agency"]]["quality"]):
            worst[str(r["agency"])] = r
    count: dict[str, int] = {}
    for c in catalog.contracts.values():
        count[c.agency] = count.get(c.agency, 0) + 1
    rows = []
    for agency, n in sorted(count.items()):
        body = catalog.registry.bodies[agency]
        if provinces is not None and body.province not in provinces:
            continue
        mine, w = scores.get(agency, {}), worst.get(agency)
        feed = catalog.feeds[str(w["feed"])] if w else None
        place = catalog.provinces.get(body.province)
        # a card's label: a province's center by its province (their full names all begin alike)
        label_vi, label_en = (f"TTĐH {place.name_vi}", f"{place.name_en} IOC") if place else (body.name_vi,
                                                                                            body.name_en)
        rows.append({"id": agency, "name_vi": body.name_vi, "name_en": body.name_en, "label_vi": label_vi,
                     "label_en": label_en, "type": body.type,
                     "province": body.province, "contracts": n, "score": mine.get(days[-1]),
                     "trend": [[d, mine.get(d)] for d in days],
                     "worst_feed": feed.id if feed else None, "worst_feed_vi": feed.name_vi if feed else None,
                     "worst_feed_en": feed.name_en if feed else None,
                     "worst_quality": float(w["quality"]) if w else None})
    rows.sort(key=lambda r: (r["score"] is None, r["score"] or 0.0, r["id"]))
    return rows


def build_agencies(catalog: Catalog, daily: list[dict[str, Any]], contracts: list[dict[str, Any]], *,
                   days: list[str], generated_at: str, refresh_s: float,
                   provinces: frozenset[str] | None = None) -> dict[str, Any]:
    """The agencies view of the wall: every body's score today, its week's trend and its worst contract today."""
    rows = wall_agencies(catalog, daily, contracts, days, provinces)
    judged = [r["score"] for r in rows if r["score"] is not None]
    return {"generated_at": generated_at, "refresh_s": refresh_s, "day": days[-1], "days": days, "agencies": rows,
            "judged": len(judged), "mean_score": sum(judged) / len(judged) if judged else None,
            "below_80": sum(1 for s in judged if s < 80)}
