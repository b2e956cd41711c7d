"""Real worker processes: kill -9, SIGTERM, SIGSTOP, and a stale worker."""

from __future__ import annotations

import signal

import psycopg
import pytest

from pgsteady import App

from .helpers import scalar, start_worker, states, stop, wait_for_output, wait_until

APP = "tests.apps.ledger_app:app"


@pytest.fixture
def tables(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (job_id bigint NOT NULL, n int NOT NULL)")
        conn.execute("CREATE TABLE runs (job_id bigint NOT NULL, n int NOT NULL)")
    return dsn


def enqueue(dsn: str, items: list[tuple[str, dict]]) -> list[int]:
    from tests.apps.ledger_app import app as process_app

    app = App(dsn=dsn)
    app.tasks = process_app.tasks  # the same task definitions, enqueued to this database
    try:
        return [r.id for r in app.enqueue_many(items)]
    finally:
        app.close()


def succeeded(dsn: str) -> int:
    return states(dsn).get("succeeded", 0)


def test_kill_9_mid_run_three_times_loses_nothing_and_duplicates_no_ledger_row(tables):
    dsn = tables
    items = [("ledger", {"n": i, "sleep": 0.02}) for i in range(250)]
    items += [("plain", {"n": i, "sleep": 0.02}) for i in range(250)]
    enqueue(dsn, items)
    args = ("--concurrency", "8", "--lease", "2", "--poll", "0.2")
    worker = start_worker(dsn, APP, *args)
    for threshold in (60, 180, 300):
        wait_until(lambda: succeeded(dsn) >= threshold, timeout=120, what=f"{threshold} jobs done")
        stop(worker, signal.SIGKILL)
        assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs WHERE state = 'running'") > 0  # killed mid-job
        worker = start_worker(dsn, APP, *args)
    wait_until(lambda: succeeded(dsn) == 500, timeout=180, what="all 500 jobs succeeded")
    stop(worker, signal.SIGTERM)
    assert states(dsn) == {"succeeded": 500}
    with psycopg.connect(dsn) as conn:
        per_job = conn.execute("SELECT count(*), count(DISTINCT job_id), max(c) FROM "
                               "(SELECT job_id, count(*) AS c FROM ledger GROUP BY job_id) s").fetchone()
        assert per_job == (250, 250, 1)  # exactly once per transactional job
        runs = conn.execute("SELECT count(DISTINCT job_id), count(*) FROM runs").fetchone()
        assert runs[0] == 250 and runs[1] >= 250  # at least once per plain job
        rescued = conn.execute("SELECT count(*) FROM pgsteady.events WHERE kind = 'rescued'").fetchone()[0]
        assert rescued >= 3  # each kill left work that a later worker rescued


def test_sigterm_lets_running_jobs_finish_and_exits_cleanly(tables):
    dsn = tables
    ids = enqueue(dsn, [("sync_nap", {"seconds": 1.0}) for _ in range(2)])
    worker = start_worker(dsn, APP, "--concurrency", "2", "--grace", "20")
    wait_until(lambda: states(dsn).get("running") == 2, what="both jobs running")
    out = stop(worker, signal.SIGTERM)
    assert worker.returncode == 0, out
    assert states(dsn) == {"succeeded": 2}, out
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs WHERE id = ANY(%s) AND attempt = 1", [ids]) == 2


def test_sigterm_after_grace_hands_jobs_back_with_their_attempt_count(tables):
    dsn = tables
    ids = enqueue(dsn, [("nap", {"seconds": 60}), ("sync_nap", {"seconds": 60})])
    with psycopg.connect(dsn, autocommit=True) as conn:
        # As if each job had already failed once before this worker took it.
        conn.execute("UPDATE pgsteady.jobs SET attempt = 1")
    worker = start_worker(dsn, APP, "--concurrency", "2", "--grace", "0.5")
    wait_until(lambda: states(dsn).get("running") == 2, what="both jobs running")
    assert scalar(dsn, "SELECT min(attempt) FROM pgsteady.jobs") == 2
    out = stop(worker, signal.SIGTERM, timeout=30)
    assert worker.returncode == 0, out
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT state::text, attempt, lease_token FROM pgsteady.jobs ORDER BY id").fetchall()
        assert rows == [("waiting", 1, None), ("waiting", 1, None)]
        assert conn.execute("SELECT count(*) FROM pgsteady.events WHERE kind = 'handed_back' AND job_id = ANY(%s)",
                            [ids]).fetchone()[0] == 2


def test_second_signal_stops_at_once_and_the_jobs_are_rescued(tables):
    dsn = tables
    enqueue(dsn, [("sync_nap", {"seconds": 2})])
    worker = start_worker(dsn, APP, "--grace", "60", "--lease", "2")
    wait_until(lambda: states(dsn).get("running") == 1, what="job running")
    worker.send_signal(signal.SIGTERM)
    wait_for_output(worker, "send it again to stop at once")
    worker.send_signal(signal.SIGTERM)
    stop(worker, signal.SIGTERM, timeout=10)
    assert worker.returncode == 130
    assert states(dsn) == {"running": 1}  # nothing handed back: the lease must expire
    rescuer = start_worker(dsn, APP, "--lease", "2", "--poll", "0.2")
    wait_until(lambda: states(dsn) == {"succeeded": 1}, timeout=60, what="rescued job succeeded")
    stop(rescuer, signal.SIGTERM)


def test_stale_worker_that_wakes_late_is_rejected_and_recorded(tables):
    """SIGSTOP a worker while it runs a job; its lease expires; another worker
    rescues and completes the job; SIGCONT: the late completion is refused."""
    dsn = tables
    # The first attempt sleeps long enough that SIGSTOP lands inside the task,
    # not during its commit, even on a loaded machine.
    (job_id,) = enqueue(dsn, [("ledger", {"n": 1, "first_sleep": 10.0})])
    stale = start_worker(dsn, APP, "--lease", "2", "--concurrency", "1")
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pgsteady.jobs WHERE state = 'running'") == 1, what="claimed")
    stale_id = scalar(dsn, "SELECT worker_id FROM pgsteady.jobs WHERE id = %s", [job_id])
    stale.send_signal(signal.SIGSTOP)
    try:
        fresh = start_worker(dsn, APP, "--lease", "2", "--poll", "0.2")
        wait_until(lambda: states(dsn) == {"succeeded": 1}, timeout=60, what="job completed by the fresh worker")
        winner = scalar(dsn, "SELECT worker_id FROM pgsteady.jobs WHERE id = %s", [job_id])
        assert winner != stale_id
    finally:
        stale.send_signal(signal.SIGCONT)
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pgsteady.events WHERE kind = 'late_write_rejected' "
                                   "AND worker_id = %s", [stale_id]) >= 1, timeout=30, what="stale write recorded")
    stop(stale, signal.SIGTERM)
    stop(fresh, signal.SIGTERM)
    assert scalar(dsn, "SELECT count(*) FROM ledger") == 1  # the stale transaction rolled back
    assert states(dsn) == {"succeeded": 1}


def test_workers_reconnect_when_postgresql_restarts_mid_run():
    """Its own embedded server, so restarting it disturbs no other test."""
    import shutil
    import tempfile
    from pathlib import Path

    from pgsteady import embedded
    from pgsteady.migrations import migrate

    home = Path(tempfile.mkdtemp(prefix="pgsteady-restart-"))
    home.chmod(0o755)  # our own new folder; the server user must enter it when we are root
    worker = None
    try:
        dsn = embedded.ensure_running(home)
        migrate(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE ledger (job_id bigint NOT NULL, n int NOT NULL)")
            conn.execute("CREATE TABLE runs (job_id bigint NOT NULL, n int NOT NULL)")
        enqueue(dsn, [("ledger", {"n": i, "sleep": 0.02}) for i in range(300)])
        worker = start_worker(dsn, APP, "--concurrency", "4", "--lease", "5", "--poll", "0.2")
        wait_until(lambda: succeeded(dsn) >= 60, timeout=60, what="60 jobs done")
        assert embedded.stop(home)
        embedded.ensure_running(home)
        wait_until(lambda: succeeded(dsn) == 300, timeout=120, what="all jobs done after the restart")
        assert worker.poll() is None, "the worker must survive the restart"
        out = stop(worker, signal.SIGTERM)
        assert "retrying" in out or "reconnecting" in out, out  # it did see the server go away
        assert scalar(dsn, "SELECT count(*) FROM (SELECT DISTINCT job_id FROM ledger) s") == 300
        assert scalar(dsn, "SELECT count(*) FROM ledger") == 300
    finally:
        if worker is not None:
            stop(worker, signal.SIGTERM)
        embedded.stop(home)
        shutil.rmtree(home, ignore_errors=True)
