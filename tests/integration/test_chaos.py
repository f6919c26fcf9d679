"""The chaos suite, short (issue 11): three seeded runs of bench/chaos.py at once, through the same code as
`make chaos`, on Tansu and on Apache Kafka (a real broker per run, chDB, the API with its sink, worker, alerter
and notifier as processes, SIGKILLed at random moments, at a window close and in their first seconds, and
restarted).

Each run publishes about 40 s (b − 20 s … b + 20 s around a minute boundary b), then waits for every window
to close. The oracle (bench/chaos_oracle.py) must find nothing: no reading lost or doubled, every series-minute
of agg_1m equal to the raw recomputation, nothing on time counted late, every alert event once and every
notification delivered under one idempotency key. About 2–3 minutes per broker.
"""

from __future__ import annotations

import pytest

from bench.chaos import SHORT, reproduce, run_many, table

pytestmark = pytest.mark.integration

SEEDS = [1101, 2202, 3303]


def test_three_short_chaos_runs_keep_every_promise(broker_kind: str) -> None:
    results = run_many(SEEDS, SHORT, parallel=len(SEEDS), per_slot=len(SEEDS), broker=broker_kind)
    print("\n" + table(results))
    assert [r["seed"] for r in results] == SEEDS
    failed = {r["seed"]: r["violations"] for r in results if not r["ok"]}
    assert not failed, f"chaos violations on {broker_kind}:\n" + "\n".join(
        f"seed {seed} ({reproduce(seed, broker_kind)}):\n  " + "\n  ".join(v[:600] for v in vs)
        for seed, vs in failed.items())
    assert {r["broker"] for r in results} == {broker_kind}
    for r in results:  # the runs did what a chaos run must do, not only pass
        assert r["readings"] > 5_000 and r["resent"] > 0 and r["deliberately_late"] > 0
        assert sum(r["kills"].values()) >= 3 and r["kills"]["worker"] >= 1
        assert r["alerts"]["expected"] == 2 * SHORT.alert_series and r["notify"]["requests"] >= r["notify"]["expected"]
