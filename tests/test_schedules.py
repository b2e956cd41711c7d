"""Cron schedules: validation, due times, exactly once per scheduled time."""

from __future__ import annotations

import asyncio
import json
import signal
from datetime import datetime, timedelta, timezone

import psycopg
import pytest

from pgsteady import App
from pgsteady.errors import ConfigError
from pgsteady.maintenance import Scheduler
from pgsteady.maintenance.scheduler import register
from pgsteady.queries import for_schema
from pgsteady.schedules import MAX_CATCH_UP, Schedule

from .helpers import scalar, start_worker, stop, wait_until

UTC = timezone.utc


@pytest.mark.parametrize("kwargs,message", [
    (dict(cron="61 * * * *"), "schedule 'nightly': '61 * * * *' is not a valid cron expression"),
    (dict(cron="every day"), "is not a valid cron expression"),
    (dict(cron="0 3 * * *", tz="Mars/Olympus"), "schedule 'nightly': unknown time zone 'Mars/Olympus'"),
    (dict(cron="0 3 * * *", on_missed="later"), "on_missed must be one of skip, once, all"),
])
def test_bad_schedules_fail_when_the_app_is_built(kwargs, message):
    app = App(dsn="postgresql://x@127.0.0.1/x")
    cron = kwargs.pop("cron")
    with pytest.raises(ConfigError, match=message.replace("*", r"\*").replace("(", r"\(")):
        app.periodic(cron, name="nightly", **kwargs)(lambda: None)


def test_due_times_and_on_missed():
    s = Schedule("m", "* * * * *", "UTC", "t")
    last = datetime(2026, 11, 28, 8, 0, tzinfo=UTC)
    due, dropped = s.due(last, last + timedelta(minutes=10, seconds=30))
    assert due[0] == last + timedelta(minutes=1) and due[-1] == last + timedelta(minutes=10) and len(due) == 10
    now = last + timedelta(minutes=10, seconds=30)
    assert Schedule("m", "* * * * *", "UTC", "t", on_missed="all").choose(due, now) == due
    assert s.choose(due, now) == due[-1:]
    assert Schedule("m", "* * * * *", "UTC", "t", on_missed="skip").choose(due, now) == due[-1:]
    assert Schedule("m", "* * * * *", "UTC", "t", on_missed="skip").choose(due, now + timedelta(minutes=5)) == []
    due, dropped = Schedule("s", "* * * * * *", "UTC", "t").due(last, last + timedelta(hours=1))
    assert len(due) == MAX_CATCH_UP and dropped == 3600 - MAX_CATCH_UP


def test_schedules_follow_their_time_zone():
    s = Schedule("paris", "0 9 * * *", "Europe/Paris", "t")
    nxt = s.next_after(datetime(2026, 11, 28, 0, 0, tzinfo=UTC))
    assert nxt.astimezone(UTC) == datetime(2026, 11, 28, 8, 0, tzinfo=UTC)  # 09:00 CET


def _scheduler(app: App) -> tuple[App, Scheduler]:
    return app, Scheduler(for_schema("pgsteady"), worker_id="test", release=None)


async def _pass(dsn: str, pair: tuple[App, Scheduler]) -> int:
    """What a worker does: register its App's schedules, then a leader's pass."""
    app, scheduler = pair
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await register(conn, for_schema("pgsteady"), list(app.schedules.values()), app.tasks)
        return await scheduler.run_once(conn)


def test_three_schedulers_racing_enqueue_each_time_once(app, dsn):
    @app.periodic("* * * * *", name="minutely", on_missed="all", max_waiting=None)
    def minutely() -> None: ...

    asyncio.run(_pass(dsn, _scheduler(app)))  # registers, starts counting now
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.schedules SET last_run_at = now() - interval '5 minutes'")

    async def race() -> list[int]:
        return await asyncio.gather(*[_pass(dsn, _scheduler(app)) for _ in range(3)])

    counts = asyncio.run(race())
    assert sum(counts) == 5
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs WHERE task = 'minutely'") == 5
    assert scalar(dsn, "SELECT count(DISTINCT scheduled_at) FROM pgsteady.schedule_runs") == 5


@pytest.mark.parametrize("on_missed,jobs", [("once", 1), ("all", 10), ("skip", 0)])
def test_after_downtime_on_missed_decides_and_says_so(app, dsn, on_missed, jobs):
    # An hourly schedule whose newest due time is ~10 minutes old: past the skip grace.
    minute = (datetime.now(UTC) - timedelta(minutes=10)).minute

    @app.periodic(f"{minute} * * * *", name="hourly", on_missed=on_missed, max_waiting=None)
    def hourly() -> None: ...

    asyncio.run(_pass(dsn, _scheduler(app)))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.schedules SET last_run_at = now() - interval '10 hours 5 minutes'")
    asyncio.run(_pass(dsn, _scheduler(app)))
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == jobs
    missed = scalar(dsn, "SELECT coalesce(sum((data->>'missed')::int), 0) FROM pgsteady.events "
                         "WHERE kind = 'schedule_missed'")
    assert missed == 10 - jobs
    if jobs < 10:
        message = scalar(dsn, "SELECT message FROM pgsteady.events WHERE kind = 'schedule_missed'")
        assert f"on_missed={on_missed}" in message


def test_the_leader_runs_schedules_its_own_app_does_not_define(app, dsn):
    @app.periodic("* * * * *", name="minutely")
    def minutely() -> None: ...

    asyncio.run(_pass(dsn, _scheduler(app)))  # a worker of this App recorded the schedule
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.schedules SET last_run_at = now() - interval '90 seconds'")
    other = App(dsn=dsn)  # the leader's App knows no schedule at all
    assert asyncio.run(_pass(dsn, _scheduler(other))) == 1
    assert scalar(dsn, "SELECT task FROM pgsteady.jobs") == "minutely"


def test_paused_schedule_enqueues_nothing(app, dsn):
    @app.periodic("* * * * *", name="minutely")
    def minutely() -> None: ...

    asyncio.run(_pass(dsn, _scheduler(app)))
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.schedules SET last_run_at = now() - interval '3 minutes', paused = true")
    assert asyncio.run(_pass(dsn, _scheduler(app))) == 0
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.schedules SET paused = false")
    assert asyncio.run(_pass(dsn, _scheduler(app))) == 1


def test_three_workers_every_second_for_ten_seconds_exactly_once(dsn):
    app_path = "tests.apps.cron_app:app"
    workers = [start_worker(dsn, app_path, "--lease", "3", "--queues", "default") for _ in range(3)]
    try:
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pgsteady.schedule_runs") >= 11, timeout=60,
                   what="ten seconds of cron events")
    finally:
        for w in workers:
            stop(w, signal.SIGTERM)
    with psycopg.connect(dsn) as conn:
        times = [r[0] for r in conn.execute("SELECT scheduled_at FROM pgsteady.schedule_runs ORDER BY 1")]
        jobs = conn.execute("SELECT count(*), count(DISTINCT id) FROM pgsteady.jobs WHERE task = 'every_second'").fetchone()
    assert len(times) >= 11
    assert [(b - a).total_seconds() for a, b in zip(times, times[1:])] == [1.0] * (len(times) - 1)  # none missed
    assert jobs == (len(times), len(times))  # one job per scheduled second
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs WHERE task = 'every_second' AND state = 'succeeded'") >= 10


def test_schedules_commands(app, dsn):
    from .test_cli import pgsteady

    @app.periodic("0 3 * * *", name="nightly", tz="Europe/Paris")
    def nightly() -> None: ...

    asyncio.run(_pass(dsn, _scheduler(app)))
    listed = json.loads(pgsteady("schedules", "list", "--json", dsn=dsn).stdout)
    assert [(s["name"], s["cron"], s["tz"], s["paused"]) for s in listed] == [("nightly", "0 3 * * *", "Europe/Paris", False)]
    assert listed[0]["next_run_at"] is not None
    assert pgsteady("schedules", "pause", "nightly", dsn=dsn).returncode == 0
    assert json.loads(pgsteady("schedules", "list", "--json", dsn=dsn).stdout)[0]["paused"] is True
    r = pgsteady("schedules", "run", "nightly", dsn=dsn)
    assert r.returncode == 0 and scalar(dsn, "SELECT task FROM pgsteady.jobs") == "nightly"
    r = pgsteady("schedules", "resume", "nigthly", dsn=dsn)
    assert r.returncode == 2 and "did you mean 'nightly'" in r.stderr
    assert pgsteady("schedules", "remove", "nightly", dsn=dsn).returncode == 0
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.schedules") == 0


@pytest.mark.parametrize("max_waiting", [1, 3])
def test_a_schedule_whose_queue_no_worker_serves_keeps_at_most_max_waiting_runs(app, dsn, max_waiting):
    """Cron keeps firing while nobody claims its runs: the backlog stops at
    max_waiting (1 by default) instead of running later as a burst, even with
    on_missed="all", and the times left out are recorded with the reason."""
    kwargs = {} if max_waiting == 1 else {"max_waiting": max_waiting}

    @app.periodic("* * * * *", name="purge", queue="nobody-serves-this", on_missed="all", **kwargs)
    def purge() -> None: ...

    def pass_after(minutes: int) -> int:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE pgsteady.schedules SET last_run_at = now() - make_interval(mins => %s)", [minutes])
        return asyncio.run(_pass(dsn, _scheduler(app)))

    asyncio.run(_pass(dsn, _scheduler(app)))  # registers, starts counting now
    assert pass_after(10) == max_waiting
    assert pass_after(20) == 0  # ten new times due, but max_waiting runs still wait
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs WHERE state = 'waiting'") == max_waiting
    message = scalar(dsn, "SELECT message FROM pgsteady.events WHERE kind = 'schedule_missed' ORDER BY id DESC LIMIT 1")
    assert f"{max_waiting} earlier run(s) still wait unclaimed" in message

    with psycopg.connect(dsn, autocommit=True) as conn:  # a worker picks the runs up at last
        conn.execute("UPDATE pgsteady.jobs SET state = 'succeeded', finished_at = now()")
        # As if the clock had moved on: the newest times are new ones again.
        conn.execute("UPDATE pgsteady.schedule_runs SET scheduled_at = scheduled_at - interval '1 day'")
    assert pass_after(30) == max_waiting


def test_a_cron_that_never_fires_is_refused_when_the_app_is_built():
    app = App(dsn="postgresql://x@127.0.0.1/x")
    with pytest.raises(ConfigError) as err:
        app.periodic("0 0 31 2 *", name="leap")(lambda: None)
    assert str(err.value) == ("schedule 'leap': '0 0 31 2 *' never fires (no date matches it, e.g. 31 February); "
                              "fix the day and month fields")
