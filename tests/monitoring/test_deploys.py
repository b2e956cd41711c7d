"""Did the deploy change anything: equal windows around the mark, judged by an explicit rule."""

from __future__ import annotations

from datetime import timedelta

import psycopg

from pgsteady.monitoring import deploys
from pgsteady.monitoring.deploys import Rule, compare
from pgsteady.monitoring.status import check

from .conftest import Q


def _mark_an_hour_ago(history):
    mark = history.now.replace(second=0, microsecond=0) - timedelta(minutes=60)
    history.deploy("v2", at=mark, note="new mailer")
    return mark


def _plant(history, task, mark, *, before, after, queue="default"):
    """before/after: dict(ok=, failed=, run=, rescued=) spread over 50 minutes of each window."""
    for side, start in ((before, mark - timedelta(minutes=55)), (after, mark + timedelta(minutes=5))):
        spread = timedelta(minutes=50)
        if side.get("ok"):
            history.succeeded(task, side["ok"], at=start, spread=spread, run=side.get("run", 0.2), queue=queue)
        if side.get("failed"):
            history.ended(task, side["failed"], "retry_scheduled", at=start, spread=spread, queue=queue,
                          message=f"{task} broke")
        if side.get("rescued"):
            history.ended(task, side["rescued"], "rescued", at=start, spread=spread, queue=queue)


def _compare(history, **rule):
    with psycopg.connect(history.dsn, autocommit=True) as conn:
        until = conn.execute("SELECT counted_until FROM pgsteady.counter_progress").fetchone()[0]
        return compare(conn, Q, until=until, rule=Rule(**rule))


def test_a_release_whose_failure_rate_doubled_is_worse(history, dsn):
    history.healthy_fleet()
    mark = _mark_an_hour_ago(history)
    _plant(history, "send", mark, before=dict(ok=1900, failed=100), after=dict(ok=1800, failed=200))
    _plant(history, "render", mark, before=dict(ok=950, failed=50), after=dict(ok=950, failed=50))
    history.count()
    result = _compare(history)
    assert result["verdict"] == "worse" and result["why"] == "worse for send"
    assert result["window_minutes"] == 60
    assert (result["before"]["to"], result["after"]["from"]) == (mark, mark)
    tasks = {t["task"]: t for t in result["tasks"]}
    assert tasks["render"]["verdict"] == "no change"
    rate = tasks["send"]["metrics"][0]
    assert (rate["metric"], rate["before"], rate["after"], rate["verdict"]) == ("failure_rate", 0.05, 0.1, "worse")
    assert rate["z"] > 3 and rate["samples"] == {"before": 2000, "after": 2000}
    assert {m["metric"]: m["verdict"] for m in tasks["send"]["metrics"]} == {
        "failure_rate": "worse", "p95_run_seconds": "no change", "throughput": "no change",
        "rescues": "not enough data"}
    assert "failure rate changes when the higher rate is >= 1.5x the lower" in result["rule"]
    s = check(dsn)
    assert s.health == "degraded"
    assert [r for r in s.reasons if "deploy" in r] == [
        f"deploy v2 (marked {mark:%Y-%m-%d %H:%M}) made things worse: worse for send"]


def test_an_unchanged_release_is_no_change(history, dsn):
    history.healthy_fleet()
    mark = _mark_an_hour_ago(history)
    _plant(history, "render", mark, before=dict(ok=950, failed=50), after=dict(ok=940, failed=52))
    history.count()
    result = _compare(history)
    assert result["verdict"] == "no change"
    assert check(dsn).health == "healthy"
    assert check(dsn).sections["deploy"]["deploy"]["note"] == "new mailer"


def test_slower_runs_fewer_successes_and_more_rescues_are_worse(history):
    mark = _mark_an_hour_ago(history)
    _plant(history, "slow", mark, before=dict(ok=500, run=0.2), after=dict(ok=500, run=1.2))
    _plant(history, "starved", mark, before=dict(ok=1000), after=dict(ok=400))
    _plant(history, "crashy", mark, before=dict(ok=500, rescued=1), after=dict(ok=500, rescued=20))
    _plant(history, "faster", mark, before=dict(ok=500, run=2.0), after=dict(ok=500, run=0.3))
    history.count()
    verdicts = {t["task"]: {m["metric"]: m["verdict"] for m in t["metrics"]} | {"task": t["verdict"]}
                for t in _compare(history)["tasks"]}
    assert verdicts["slow"]["p95_run_seconds"] == "worse" and verdicts["slow"]["task"] == "worse"
    assert verdicts["starved"]["throughput"] == "worse" and verdicts["starved"]["task"] == "worse"
    assert verdicts["crashy"]["rescues"] == "worse" and verdicts["crashy"]["task"] == "worse"
    assert verdicts["faster"]["p95_run_seconds"] == "better" and verdicts["faster"]["task"] == "better"


def test_noise_is_not_a_verdict(history):
    mark = _mark_an_hour_ago(history)
    _plant(history, "tiny", mark, before=dict(ok=29, failed=1), after=dict(ok=27, failed=3))
    _plant(history, "wobbly", mark, before=dict(ok=190, failed=10), after=dict(ok=184, failed=16))
    history.count()
    tasks = {t["task"]: t for t in _compare(history)["tasks"]}
    rate = tasks["tiny"]["metrics"][0]
    assert rate["verdict"] == "not enough data" and "needs 100 attempts on each side, has 30 and 30" in rate["why"]
    # Its throughput had enough events to say it did not move; nothing says worse.
    assert tasks["tiny"]["verdict"] == "no change"
    # 5% -> 8% on 200 attempts each is well within chance (z < 3): no verdict either way.
    assert tasks["wobbly"]["metrics"][0]["verdict"] == "no change"


def test_windows_are_equal_whole_minutes_bounded_by_data_and_the_previous_mark(history):
    now_minute = history.now.replace(second=0, microsecond=0)
    history.deploy("v1", at=now_minute - timedelta(minutes=50, seconds=30))
    history.deploy("v2", at=now_minute - timedelta(minutes=30, seconds=20))
    history.count()
    result = _compare(history)
    # After the v2 mark only ~29 whole minutes are counted; before it, v1 is 19 minutes away.
    assert result["deploy"]["version"] == "v2" and result["window_minutes"] == 19
    assert result["after"]["from"] == now_minute - timedelta(minutes=30)  # the mark's own minute is left out
    assert result["before"]["to"] == now_minute - timedelta(minutes=31)
    assert _compare(history, window=timedelta(minutes=10))["window_minutes"] == 10
    history.deploy("v3", at=history.now - timedelta(minutes=2))
    result = _compare(history)
    assert result["verdict"] == "not enough data" and "5 needed" in result["why"]


def test_marks_are_recorded_with_who_and_listed_newest_first(conn):
    first = deploys.mark(conn, Q, "2026.11.27", note="mailer v2")
    second = deploys.mark(conn, Q, "  2026.11.28 ", by="ci@runner")
    assert first["marked_by"] and "@" in first["marked_by"]
    assert (second["version"], second["marked_by"]) == ("2026.11.28", "ci@runner")
    assert [d["id"] for d in deploys.list_deploys(conn, Q)] == [second["id"], first["id"]]
