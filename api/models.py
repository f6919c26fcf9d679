"""Response models: they document the API at /docs and are serialised straight to JSON by pydantic-core."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class SinkHealth(BaseModel):
    running: bool
    rows: dict[str, int] = Field(description="rows written per table since start")
    last_flush_s: float | None = Field(description="seconds since the last flush; null before the first")
    error: str | None = None
    recomputed: int = Field(0, description="agg_1m windows written recomputed from raw readings since start")
    waiting_triggers: int = Field(0, description="closed or amended windows waiting for their raw readings "
                                                 "to be stored before they are recomputed")
    healed: int = Field(0, description="windows the sink recomputed itself since start: after they closed, their "
                                       "stored aggregate differed from their readings (the worker lost them or was "
                                       "late; see README Reliability)")
    unchecked: int = Field(0, description="windows of stored readings not yet checked against their aggregate")


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    warehouse: Literal["ok", "error"]
    sink: SinkHealth | None = Field(description="the embedded sink; null when it runs in its own process")


class CategoryOut(BaseModel):
    id: str
    name_vi: str
    name_en: str


class FeedOut(BaseModel):
    id: str
    category: str
    category_name_vi: str
    category_name_en: str
    name_vi: str
    name_en: str
    source: str
    unit: str
    kind: Literal["counter", "gauge"]
    scope: Literal["provincial", "national"]
    dims: dict[str, list[str]]
    cadence_s: float
    valid_min: float
    valid_max: float
    topic: str
    series: int = Field(description="expected series: provinces × dim combinations")


class FeedsOut(BaseModel):
    categories: list[CategoryOut]
    feeds: list[FeedOut]


class ProvinceOut(BaseModel):
    code: str
    name_vi: str
    name_en: str
    kind: str
    lat: float
    lon: float
    legacy_codes: list[str]


class AgencyOut(BaseModel):
    id: str
    type: str = Field(description="ministry | agency | province | corporation")
    name_vi: str
    name_en: str
    parent: str = Field(description="the body it reports to ('' for none)")
    province: str = Field(description="a provincial center's province code ('' for a central body)")
    feeds: list[str] = Field(description="the feeds it supplies (its readings carry its id in header `agency`)")
    contact: str = Field(description="role address for escalation")
    score_today: float | None = Field(None, description="today's quality score 0–100 (Vietnam day; README, \"Feed "
                                                        "contracts and the quality score\"); null: nothing judged yet")
    worst_contract: str | None = Field(None, description="the feed of its lowest-scoring contract today")
    contracts: list[ContractOut] = Field(default_factory=list, description="its feed contracts, with today's measures")


class ContractDayOut(BaseModel):
    quality: float | None = Field(description="0–100: the mean over the day's judged hours")
    completeness: float | None = Field(description="share of the contract's series that reported, per hour (mean)")
    timeliness: float | None = Field(description="share of readings not late (mean of the hours)")
    validity: float | None = Field(description="share of readings not dead-lettered (mean of the hours)")
    volume: float | None = Field(description="1 inside the band of readings per hour, less outside (mean)")
    readings: int
    late: int
    dead: int
    hours: int = Field(description="hours judged")


class ContractOut(BaseModel):
    feed: str
    series: int = Field(description="series it must cover (provinces × dimension values)")
    provinces: int = Field(description="provinces those series are in")
    cadence_s: float
    readings_per_hour: list[float] = Field(description="the band: [min, max]")
    timeliness_pct: float = Field(description="promised share of readings within the lateness allowance")
    today: ContractDayOut | None = None


class DayScoreOut(BaseModel):
    day: str
    score: float
    contract_hours: int
    completeness: float | None
    timeliness: float | None
    validity: float | None
    volume: float | None
    worst_feed: str


class AgencyDetailOut(AgencyOut):
    history: list[DayScoreOut] = Field(description="the daily score, oldest first")


class Point(BaseModel):
    t: str = Field(description="bucket start, ISO 8601 UTC")
    count: int
    sum: float
    min: float
    max: float
    avg: float
    last: float
    value: float = Field(description="sum for counters, avg for gauges")


class SeriesOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    feed: str
    province: str | None = Field(description="current province code; null = all provinces together")
    unit: str
    kind: Literal["counter", "gauge"]
    source: Literal["raw", "agg"]
    step: int
    from_: str = Field(alias="from", description="range start (aligned down to the step), inclusive")
    to: str = Field(description="range end (aligned up to the step), exclusive")
    dims: dict[str, list[str]]
    points: list[Point]


class Stats5m(BaseModel):
    count: int
    sum: float
    avg: float | None
    min: float | None
    max: float | None


class OverviewFeed(BaseModel):
    id: str
    name_vi: str
    name_en: str
    category: str
    unit: str
    kind: Literal["counter", "gauge"]
    cadence_s: float
    series_expected: int
    series_reporting: int
    series_silent: int
    status: Literal["reporting", "degraded", "silent"] = Field(
        description="reporting: every expected series reports; silent: none; degraded: some")
    last_ts: str | None
    latest_value: float | None = Field(description="latest reading of each reporting series: summed for "
                                                   "counters, averaged for gauges")
    last_5m: Stats5m


class OverviewCategory(BaseModel):
    id: str
    name_vi: str
    name_en: str
    feeds: list[str]
    feeds_reporting: int
    series_reporting: int
    series_silent: int


class OverviewProvince(BaseModel):
    code: str
    name_vi: str
    name_en: str
    lat: float
    lon: float
    feeds_reporting: int
    series_reporting: int
    series_silent: int
    last_ts: str | None


class Totals(BaseModel):
    feeds: int
    feeds_reporting: int
    categories: int
    categories_reporting: int
    provinces: int
    provinces_reporting: int
    series_expected: int
    series_reporting: int
    series_silent: int
    series_unexpected: int = Field(description="reporting series the catalog does not list (e.g. partial dims)")
    readings_5m: int
    dead_letters_5m: int
    late_5m: int


class PublicServices(BaseModel):
    resolved_5m: float = Field(description="dossiers resolved in the last 5 minutes (dvc_dossiers_resolved)")
    on_time_5m: float = Field(description="of which resolved on time (dims on_time=true)")
    on_time_rate_pct: float | None = Field(description="on_time_5m / resolved_5m in percent; null when none")


class Overview(BaseModel):
    generated_at: str
    totals: Totals
    public_services: PublicServices
    categories: list[OverviewCategory]
    feeds: list[OverviewFeed]
    provinces: list[OverviewProvince]
