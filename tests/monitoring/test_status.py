"""`status` on planted histories: up, slow, failing, and the health they add up to."""

from __future__ import annotations

from datetime import timedelta

import pytest

from pgsteady.monitoring.status import Thresholds, check


def test_a_quiet_healthy_fleet_is_healthy(history, dsn):
    history.healthy_fleet()
    history.succeeded("t", 30, at=history.ago(minutes=10))
    history.count()
    s = check(dsn)
    assert (s.health, s.exit_code, s.reasons) == ("healthy", 0, [])
    up = s.to_dict()["up"]
    assert up["schema"]["current"] and up["live_workers"] == 1
    assert up["leader"] == {"known": True, "worker_id": "w-live", "elected_at": up["leader"]["elected_at"],
                            "renewed_at": up["leader"]["renewed_at"], "expires_at": up["leader"]["expires_at"],
                            "alive": True}
    assert up["workers"][0]["release"] == "r1"


def test_a_dead_worker_shows_as_down(history, dsn):
    history.worker("w-dead", heartbeat=history.ago(minutes=5), leader=True)
    history.count()
    s = check(dsn)
    assert (s.health, s.exit_code) == ("down", 2)
    [w] = s.sections["up"]["workers"]
    assert (w["id"], w["alive"]) == ("w-dead", False)
    assert any("no live worker" in r for r in s.reasons)
    assert any("worker w-dead is down: no heartbeat for 5m" in r for r in s.reasons), s.reasons
    assert s.sections["up"]["leader"]["alive"] is False


def test_a_leader_whose_lease_row_expired_is_not_alive_even_if_renewed_just_now(history, dsn):
    # The lease row's expiry is the leadership: a follower may take it over now,
    # however recent the last renewal looks.
    history.worker("w-live", heartbeat=history.now, leader=True, lease=timedelta(seconds=-1))
    history.count()
    s = check(dsn)
    assert s.sections["up"]["leader"]["alive"] is False
    assert any("no live maintenance leader" in r for r in s.reasons), s.reasons
    history.conn.execute("UPDATE pgsteady.leader SET expires_at = now() + interval '30 seconds', "
                         "renewed_at = now() - interval '1 hour'")
    assert check(dsn).sections["up"]["leader"]["alive"] is True


def test_one_dead_worker_beside_live_ones_is_degraded_and_old_deaths_are_forgotten(history, dsn):
    history.healthy_fleet()
    history.worker("w-died-now", heartbeat=history.ago(minutes=3))
    history.worker("w-died-long-ago", heartbeat=history.ago(hours=5))
    history.count()
    s = check(dsn)
    assert s.health == "degraded"
    assert [r for r in s.reasons if "worker" in r] == ["worker w-died-now is down: no heartbeat for 3m"]
    assert s.sections["up"]["dead_workers"] == 2


def test_a_backlog_shows_as_slow(history, dsn):
    history.healthy_fleet()
    history.waiting(1_200, queue="mail", due=history.ago(minutes=20))
    history.waiting(3, queue="mail", due=history.now + timedelta(hours=1))
    history.waiting(2, queue="fast", due=history.ago(seconds=10))
    history.succeeded("send", 100, queue="mail", at=history.ago(minutes=10), run=0.2, wait=400)
    history.count()
    s = check(dsn)
    assert s.health == "degraded"
    queues = {q["queue"]: q for q in s.sections["slow"]["queues"]}
    mail = queues["mail"]
    assert (mail["waiting"], mail["scheduled"], mail["slow"]) == (1_200, 3, True)
    assert mail["oldest_waiting_seconds"] == pytest.approx(1200, abs=30)
    assert 300 < mail["last_15m"]["wait_seconds"]["p95"] <= 900 and mail["last_15m"]["per_minute"]["succeeded"] > 6
    assert queues["fast"]["slow"] is False
    assert [r for r in s.reasons if "slow" in r] == [
        "queue 'mail' is slow: its oldest due job has waited 20m (threshold 5m), 1200 job(s) waiting"]
    # The threshold is the user's to set, and a paused queue is not slow: it was asked to wait.
    assert check(dsn, thresholds=Thresholds(max_wait=3600)).health == "healthy"
    history.conn.execute("INSERT INTO pgsteady.queues (queue, paused) VALUES ('mail', true)")
    assert check(dsn).health == "healthy"


def test_percentiles_of_the_last_15_minutes_beside_the_last_day(history, dsn):
    history.healthy_fleet()
    history.succeeded("render", 200, at=history.ago(minutes=8), spread=timedelta(minutes=5), run=0.2, wait=0.02)
    history.succeeded("render", 800, at=history.ago(hours=20), spread=timedelta(hours=2), run=3.0, wait=7.0)
    history.count()
    [q] = check(dsn).sections["slow"]["queues"]
    recent, day = q["last_15m"], q["last_24h"]
    assert (recent["succeeded"], day["succeeded"]) == (200, 1000)
    assert 0.1 < recent["run_seconds"]["p50"] <= 0.25 and 0.01 < recent["wait_seconds"]["p95"] <= 0.025
    assert 2.5 < day["run_seconds"]["p50"] <= 5 and 5 < day["wait_seconds"]["p95"] <= 10
    assert day["run_seconds"]["mean"] == pytest.approx((200 * 0.2 + 800 * 3.0) / 1000, rel=1e-3)


def test_a_failing_task_shows_as_failing_with_its_top_error(history, dsn):
    history.healthy_fleet()
    at, spread = history.ago(minutes=12), timedelta(minutes=10)
    history.succeeded("send", 60, at=at, spread=spread)
    history.ended("send", 30, "retry_scheduled", at=at, spread=spread, message="SMTPError: 550 mailbox unavailable")
    history.ended("send", 5, "failed", at=at, spread=spread, message="SMTPError: 550 mailbox unavailable")
    history.ended("send", 4, "retry_scheduled", at=at, spread=spread, message="TimeoutError: timed out after 60s")
    history.ended("send", 2, "rescued", at=at, spread=spread)
    history.ended("send", 3, "late_write_rejected", at=at, spread=spread)
    history.succeeded("render", 100, at=at, spread=spread)
    history.ended("render", 2, "retry_scheduled", at=at, spread=spread, message="KeyError: 'x'")
    history.ended("older", 9, "failed", at=history.ago(minutes=40), message="OSError: disk full")
    history.count()
    s = check(dsn)
    f = s.sections["failing"]
    assert s.health == "degraded"
    assert [r for r in s.reasons if "failing" in r] == [
        "task 'send' is failing: 39% of 99 attempts in the last 15 minutes (threshold 10%); "
        "top error: SMTPError: 550 mailbox unavailable"]
    recent = f["last_15m"]
    assert (recent["failures"], recent["failed"], recent["retried"], recent["rescued"], recent["rejected"]) == \
        (41, 5, 36, 2, 3)
    assert f["last_1h"]["failed"] == 14
    tasks = {t["task"]: t for t in f["tasks"]}
    assert tasks["send"]["failing"] and not tasks["render"]["failing"] and not tasks["older"]["failing"]
    assert tasks["send"]["top_error"]["message"] == "SMTPError: 550 mailbox unavailable"
    assert tasks["send"]["top_error"]["failures"] == 35
    assert [t["task"] for t in f["tasks"]][0] == "send"
    assert [(e["task"], e["failures"]) for e in f["top_errors"]] == [
        ("send", 35), ("older", 9), ("send", 4), ("render", 2)]
    # Rates are per minute of the window: 15 whole minutes and the part of the current one counted.
    assert 41 / 16 < recent["per_minute"]["failures"] <= 41 / 15


def test_too_few_attempts_are_not_called_failing(history, dsn):
    history.healthy_fleet()
    history.ended("rare", 3, "failed", at=history.ago(minutes=5))
    history.count()
    s = check(dsn)
    assert s.health == "healthy" and s.sections["failing"]["tasks"][0]["failing"] is False
    assert check(dsn, thresholds=Thresholds(min_attempts=3)).health == "degraded"


def test_stale_or_missing_counters_and_a_missing_leader_are_degraded(history, dsn):
    history.worker("w-live", heartbeat=history.now)
    s = check(dsn)
    assert s.health == "degraded"
    assert any("counters have never been updated" in r for r in s.reasons)
    assert any("no live maintenance leader" in r for r in s.reasons)
    history.count()
    history.conn.execute("UPDATE pgsteady.counter_progress SET counted_until = now() - interval '20 minutes'")
    assert any("counters are 20m behind" in r for r in check(dsn).reasons)


def test_status_of_one_queue_leaves_the_others_out(history, dsn):
    history.worker("w-mail", heartbeat=history.now, queues=["mail"], leader=True)
    history.worker("w-other", heartbeat=history.ago(minutes=2), queues=["other"])
    history.waiting(5, queue="other", due=history.ago(hours=1))
    history.succeeded("send", 10, queue="mail", at=history.ago(minutes=3))
    history.count()
    s = check(dsn, queue="mail")
    assert s.health == "healthy", s.reasons
    assert [q["queue"] for q in s.sections["slow"]["queues"]] == ["mail"]
    assert [w["id"] for w in s.sections["up"]["workers"]] == ["w-mail"]
    assert check(dsn, queue="other").health == "down"  # its only worker is dead


def test_an_unreachable_database_is_a_down_status_not_a_crash(server_dsn):
    from pgsteady.database import with_dbname

    s = check(with_dbname(server_dsn, "no_such_database_here"))
    assert (s.health, s.exit_code) == ("down", 2)
    assert s.to_dict()["up"]["database"]["reachable"] is False
    assert "cannot connect to PostgreSQL" in s.reasons[0]


def test_a_schema_that_was_not_migrated_is_down(empty_dsn):
    s = check(empty_dsn)
    assert s.health == "down" and "run `pgsteady migrate`" in s.reasons[0]


def test_the_day_read_from_hours_and_minutes_equals_a_count_of_the_jobs(history, dsn):
    # A zone half an hour off UTC: hours are cut in UTC by the pass and by status alike.
    history.conn.execute(f"ALTER DATABASE {history.conn.info.dbname} SET timezone = 'Asia/Kolkata'")
    history.healthy_fleet()
    history.succeeded("t", 3_001, at=history.ago(hours=30), spread=timedelta(hours=30), run=0.3)
    history.ended("t", 701, "retry_scheduled", at=history.ago(hours=30), spread=timedelta(hours=30))
    history.count(backfill=timedelta(hours=31))  # the day window starts at a whole minute, before now - 24 h
    s = check(dsn)
    until = s.sections["counters"]["counted_until"]
    assert until.utcoffset() == timedelta(hours=5, minutes=30)
    start = until.replace(second=0, microsecond=0)
    day = history.conn.execute(
        "SELECT count(*) FROM pgsteady.jobs WHERE state = 'succeeded' AND finished_at >= %s AND finished_at < %s",
        [start - timedelta(hours=24), until]).fetchone()[0]
    hour = history.conn.execute(
        "SELECT count(*) FROM pgsteady.events WHERE kind = 'retry_scheduled' AND created_at >= %s AND created_at < %s",
        [start - timedelta(hours=1), until]).fetchone()[0]
    [q] = s.sections["slow"]["queues"]
    assert (q["last_24h"]["succeeded"], s.sections["failing"]["last_1h"]["retried"]) == (day, hour)
    assert 2_000 < day < 3_001 and hour > 0
    # The middle of the day comes from the hourly rows: without its minutes the answer is the same.
    history.conn.execute("DELETE FROM pgsteady.job_stats WHERE minute >= %s AND minute < %s",
                         [start - timedelta(hours=22), start - timedelta(hours=3)])
    [q] = check(dsn).sections["slow"]["queues"]
    assert q["last_24h"]["succeeded"] == day
