"""The queues and schedules domain modules: the Python API the CLI and the dashboard call."""

from __future__ import annotations

import asyncio
import json

import pytest

from pgsteady import queues, schedule_admin
from pgsteady.errors import ConfigError
from pgsteady.queries import for_schema

from .test_schedules import _pass, _scheduler

Q = for_schema("pgsteady")


def test_pause_resume_and_limits_are_recorded_with_who(conn):
    queues.pause(conn, Q, "mail", actor="dashboard:alice from 10.0.0.5")
    queues.set_limits(conn, Q, "mail", max_running=3, actor="cli:bob@host:1")
    queues.resume(conn, Q, "mail")
    [row] = queues.list_queues(conn, Q)
    assert (row.queue, row.paused, row.max_running, row.max_per_second) == ("mail", False, 3, None)
    history = queues.history(conn, Q, "mail")
    assert [e.kind for e in history] == ["queue_resumed", "queue_limits", "queue_paused"]
    assert history[2].actor == "dashboard:alice from 10.0.0.5" and history[1].data["max_running"] == 3
    assert history[0].actor.startswith("cli:")


def test_limits_set_from_python_are_in_the_queue_history_like_the_cli_s(app, conn):
    app.set_queue_limits("mail", max_running=2, actor="deploy:release-42")
    app.set_queue_limits("mail", max_per_second=5, conn=conn)  # in the caller's transaction too
    [row] = queues.list_queues(conn, Q)
    assert (row.max_running, row.max_per_second) == (None, 5)
    history = queues.history(conn, Q, "mail")
    assert [e.kind for e in history] == ["queue_limits", "queue_limits"]
    assert history[1].actor == "deploy:release-42" and history[1].data == {"queue": "mail", "max_running": 2,
                                                                         "max_per_second": None}
    assert history[0].actor.startswith("app:") and history[0].data["max_per_second"] == 5


@pytest.mark.parametrize("bad", [0, -1, True, "3", 2**40, 1.5])
def test_app_refuses_bad_limits_by_the_same_rule(app, conn, bad):
    with pytest.raises(ConfigError, match="max_running must be an integer between 1 and"):
        app.set_queue_limits("mail", max_running=bad)
    assert queues.list_queues(conn, Q) == [] and queues.history(conn, Q, "mail") == []


@pytest.mark.parametrize("bad", [0, -1, True, "3", 2**40, 1.5])
def test_bad_limits_are_refused_before_anything_is_stored(conn, bad):
    with pytest.raises(ConfigError, match="max_running must be an integer between 1 and"):
        queues.set_limits(conn, Q, "mail", max_running=bad)
    assert queues.list_queues(conn, Q) == [] and queues.history(conn, Q, "mail") == []


def test_a_queue_name_is_checked(conn):
    for bad in ("", "x" * 1000, "a\x00b"):
        with pytest.raises(ConfigError, match="queue name"):
            queues.pause(conn, Q, bad)


def test_queue_depth_is_the_status_answer(conn):
    from pgsteady.monitoring.status import collect

    conn.execute("INSERT INTO pgsteady.jobs (queue, task, args, max_attempts, run_at) "
                 "SELECT 'mail', 't', '{}', 3, now() - interval '1 minute' FROM generate_series(1, 4)")
    [row] = queues.list_queues(conn, Q)
    [status_row] = collect(conn).sections["slow"]["queues"]
    assert row.waiting == status_row["waiting"] == 4


def test_a_paused_schedule_shows_no_next_run_and_a_new_one_no_last_run(app, dsn, conn):
    @app.periodic("0 3 * * *", name="nightly")
    def nightly() -> None: ...

    asyncio.run(_pass(dsn, _scheduler(app)))
    [row] = schedule_admin.list_schedules(conn, Q)
    assert row.next_run_at is not None
    # Registered, never run: its stored last_run_at is where it starts counting, not a run.
    assert conn.execute("SELECT last_run_at FROM pgsteady.schedules").fetchone()[0] is not None
    assert row.last_run_at is None and row.last_outcome is None
    schedule_admin.pause(conn, Q, "nightly")
    assert schedule_admin.get(conn, Q, "nightly").next_run_at is None
    job_id = schedule_admin.run_now(conn, Q, "nightly", actor="dashboard:alice")
    events = conn.execute("SELECT kind, worker_id FROM pgsteady.events WHERE job_id = %s", [job_id]).fetchall()
    assert events == [("manual_run", "dashboard:alice")]
    schedule_admin.resume(conn, Q, "nightly")
    assert schedule_admin.get(conn, Q, "nightly").next_run_at is not None
    with pytest.raises(schedule_admin.UnknownSchedule, match="did you mean 'nightly'"):
        schedule_admin.pause(conn, Q, "nigthly")


def test_schedules_list_command_shows_never_and_a_dash(app, dsn):
    from .test_cli import pgsteady

    @app.periodic("0 3 * * *", name="nightly")
    def nightly() -> None: ...

    asyncio.run(_pass(dsn, _scheduler(app)))
    assert pgsteady("schedules", "pause", "nightly", dsn=dsn).returncode == 0
    [listed] = json.loads(pgsteady("schedules", "list", "--json", dsn=dsn).stdout)
    assert listed["next_run_at"] is None and listed["last_run_at"] is None
    text = pgsteady("schedules", "list", dsn=dsn).stdout
    assert "never" in text and "paused" in text


def test_queue_names_with_markup_do_not_break_the_list(dsn, conn):
    from .test_cli import pgsteady

    queues.pause(conn, Q, "[/x]mail")
    r = pgsteady("queues", "list", dsn=dsn)
    assert r.returncode == 0 and "[/x]mail" in r.stdout, r.stderr
    r = pgsteady("queues", "limit", "q", "--max-running", "0", dsn=dsn)
    assert r.returncode == 2 and "max_running must be an integer between 1 and" in r.stderr
