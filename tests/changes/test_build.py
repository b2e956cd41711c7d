"""The build job against real trouble: duplicate keys, a lock held by a long
transaction, a worker killed in the middle of a build."""

from __future__ import annotations

import json
import signal
import threading
import time

import psycopg

from ..helpers import scalar, stop, wait_until
from .conftest import make_events, pgsteady, write_change


def _invalid_indexes(dsn: str) -> int:
    return scalar(dsn, "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                       "WHERE c.relname = 'events' AND NOT i.indisvalid")


def _history(dsn: str, job_id: int) -> list[str]:
    with psycopg.connect(dsn) as conn:
        return [m for (m,) in conn.execute("SELECT message FROM pgsteady.events WHERE job_id = %s ORDER BY id",
                                           [job_id]).fetchall() if m]


def test_unique_build_over_duplicates_fails_clearly_and_leaves_nothing_then_succeeds_after_the_fix(dsn, tmp_path, worker):
    make_events(dsn, 50_000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE events ADD COLUMN ref int")
        conn.execute("UPDATE events SET ref = id")
        conn.execute("UPDATE events SET ref = 7 WHERE id = 4242")
    path = write_change(tmp_path, "events-ref-unique",
                        "CREATE UNIQUE INDEX CONCURRENTLY events_ref_key ON events (ref)",
                        extra='[rehearse]\nskip = true\n')
    worker()
    failed = pgsteady("change", "apply", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    error = failed.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("pgsteady: error: "), failed.stderr
    assert "could not create unique index" in error[0] and "(ref)=(7)" in error[0], error[0]
    assert "nothing was left behind" in error[0]
    assert scalar(dsn, "SELECT to_regclass('events_ref_key')") is None
    assert _invalid_indexes(dsn) == 0
    shown = json.loads(pgsteady("change", "show", "events-ref-unique", "--json", dsn=dsn).stdout)
    assert shown["status"] == "apply failed" and shown["steps"][-1]["status"] == "failed"

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE events SET ref = id WHERE id = 4242")
    again = pgsteady("change", "apply", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert again.returncode == 0, again.stdout + again.stderr
    assert scalar(dsn, "SELECT indisvalid AND indisunique FROM pg_index WHERE indexrelid = 'events_ref_key'::regclass")


def test_lock_timeouts_are_retried_then_reported_with_the_blocking_pid_and_nothing_queues_behind_longer(
        dsn, tmp_path, worker):
    make_events(dsn, 10_000)
    path = write_change(tmp_path, "blocked", "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)",
                        extra='[rehearse]\nskip = true\n[build]\nlock_timeout = "300ms"\nlock_retries = 3\n'
                              'retry_backoff = "200ms"\n')
    holder = psycopg.connect(dsn)
    holder.execute("LOCK TABLE events IN SHARE MODE")  # a long transaction, as a plain CREATE INDEX would hold
    holder_pid = holder.info.backend_pid
    waits: list[float] = []
    done = threading.Event()

    def bystander() -> None:
        # A session whose lock is compatible with the long transaction's but not with
        # the build's: while the build waits, it queues behind it.
        with psycopg.connect(dsn) as conn:
            while not done.is_set():
                began = time.monotonic()
                with conn.transaction():
                    conn.execute("LOCK TABLE events IN SHARE MODE")
                waits.append(time.monotonic() - began)
                time.sleep(0.02)

    thread = threading.Thread(target=bystander, daemon=True)
    thread.start()
    try:
        worker()
        r = pgsteady("change", "apply", str(path), "--wait", "--timeout", "60", dsn=dsn)
    finally:
        done.set()
        thread.join(10)
        holder.rollback()
        holder.close()
    assert r.returncode == 2, r.stdout + r.stderr
    assert "gave up after 3 lock timeouts of 0.3s" in r.stderr and f"pid {holder_pid}" in r.stderr, r.stderr
    assert "LOCK TABLE events IN SHARE MODE" in r.stderr
    job_id = json.loads(pgsteady("change", "show", "blocked", "--json", dsn=dsn).stdout)["steps"][-1]["job_id"]
    history = _history(dsn, job_id)
    assert sum(m.startswith("lock timeout") for m in history) == 2, history  # two retries, then the failure
    assert scalar(dsn, "SELECT attempt FROM pgsteady.jobs WHERE id = %s", [job_id]) == 1  # failed without job retries
    assert scalar(dsn, "SELECT to_regclass('events_kind_idx')") is None and _invalid_indexes(dsn) == 0
    # Nobody waited behind the DDL much longer than its lock timeout.
    assert waits and max(waits) < 0.3 + 0.7, sorted(waits)[-3:]


def test_worker_killed_mid_build_is_cleaned_up_and_completed_by_the_next_attempt(dsn, tmp_path, worker):
    make_events(dsn, 50_000)
    path = write_change(tmp_path, "killed", "CREATE INDEX CONCURRENTLY events_account_idx ON events (account)",
                        extra='[rehearse]\nskip = true\n[build]\nlock_timeout = "60s"\n')
    # An open writing transaction holds the build in "waiting for writers before build",
    # after the INVALID index is already in the catalogue.
    writer = psycopg.connect(dsn)
    writer.execute("INSERT INTO events (created_at, kind, account) VALUES (now(), 'late', 1)")
    first = worker()
    r = pgsteady("change", "apply", str(path), "--json", dsn=dsn)
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    build = "SELECT phase FROM pg_stat_progress_create_index WHERE relid = to_regclass('events')"
    wait_until(lambda: (scalar(dsn, build) or "").startswith("waiting for writers"), timeout=30, what="build waiting")
    assert _invalid_indexes(dsn) == 1
    stop(first, signal.SIGKILL)
    # The server ends the orphaned build within a second (client_connection_check_interval).
    wait_until(lambda: scalar(dsn, build) is None, timeout=15, what="orphaned build ended")
    assert _invalid_indexes(dsn) == 1
    writer.commit()
    writer.close()

    worker()
    wait_until(lambda: scalar(dsn, "SELECT state::text FROM pgsteady.jobs WHERE id = %s", [job_id]) == "succeeded",
               timeout=60, what="rerun succeeded")
    assert scalar(dsn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'events_account_idx'::regclass")
    assert _invalid_indexes(dsn) == 0
    assert scalar(dsn, "SELECT attempt FROM pgsteady.jobs WHERE id = %s", [job_id]) == 2
    assert any("INVALID leftover of an interrupted build" in m for m in _history(dsn, job_id))
    shown = json.loads(pgsteady("change", "show", "killed", "--json", dsn=dsn).stdout)
    assert shown["status"] == "applied" and shown["steps"][-1]["status"] == "done"
