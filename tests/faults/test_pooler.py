"""Through a real PgBouncer, in session and in transaction pool mode."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import uuid
from datetime import timedelta

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pgsteady import App
from pgsteady.claiming import CLAIM_SESSION_SETTINGS
from pgsteady.database import connect
from pgsteady.errors import ConfigError
from pgsteady.maintenance import Leader
from pgsteady.queries import for_schema
from pgsteady.topology import Link, leash_settings

from ..helpers import scalar, stop, wait_until
from . import fleet
from .invariants import assert_exactly_once, plant, settle

Q = for_schema("pgsteady")


def test_a_pooler_is_detected_and_then_nothing_is_prepared(fault_server, fault_db, bouncer):
    with connect(bouncer.dsn(fault_db), autocommit=True) as conn:
        assert conn.prepare_threshold is None
        for _ in range(10):  # would be prepared from the 5th time on
            conn.execute("SELECT %(a)s::int + 1", dict(a=1))
    with connect(fault_server.dsn(fault_db), autocommit=True) as conn:
        assert conn.prepare_threshold is not None  # direct: psycopg prepares the hot statements


def test_an_unknown_pooler_setting_is_one_line_with_a_suggestion(monkeypatch):
    with pytest.raises(ConfigError, match="pooler 'transation' is not known; did you mean 'transaction'"):
        App(pooler="transation")
    monkeypatch.setenv("PGSTEADY_POOLER", "pgbouncer")
    with pytest.raises(ConfigError, match="use one of auto, none, session, transaction"):
        App()


def test_settings_hold_inside_each_transaction_under_transaction_pooling(fault_db, tx_bouncer):
    link = Link(tx_bouncer.dsn(fault_db), settings=leash_settings(6))
    with link.connect(autocommit=True) as conn:
        assert link.per_transaction
        with link.transaction(conn):
            assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "6s"
        # Outside it, the server session may be another client's next: nothing leaks to it.
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "0"


def test_enqueue_from_many_threads_through_pgbouncer_meets_no_other_clients_statement(fault_db, bouncer):
    app = App(dsn=bouncer.dsn(fault_db))
    app.task(lambda i, j: None, name="t")
    errors: list[BaseException] = []

    def enqueue(i: int) -> None:
        try:
            for j in range(40):  # two statement shapes, each run past the prepare threshold
                app.enqueue("t", {"i": i, "j": j}, key=f"{i}:{j}" if j % 2 else None)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    app.close()
    assert errors == []
    assert scalar(bouncer.server.dsn(fault_db), "SELECT count(*) FROM pgsteady.jobs") == 240


def test_leadership_through_a_transaction_pooler_is_one_at_a_time_and_never_stranded(fault_server, fault_db,
                                                                                      tx_bouncer):
    dsn = tx_bouncer.dsn(fault_db)

    async def scenario() -> None:
        link = Link(dsn)
        pools = [AsyncConnectionPool(dsn, min_size=1, max_size=2, open=False, kwargs=link.kwargs(autocommit=True),
                                     configure=link.configure_async) for _ in range(3)]
        for p in pools:
            await p.open(wait=True)
        leaders = [Leader(Q, f"w{i}", lease=1.0) for i in range(3)]

        async def step(i: int) -> bool:
            async with pools[i].connection() as conn:
                return await leaders[i].keep(conn)

        won = [await step(i) for i in range(3)]
        assert won.count(True) == 1
        # Every worker goes away without a word (killed): their pooled server
        # sessions stay open in PgBouncer, and must not keep the leadership.
        for p in pools:
            await p.close()
        newcomer = Leader(Q, "w-new", lease=1.0)
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, prepare_threshold=None) as conn:
            while not await newcomer.try_acquire(conn):
                await asyncio.sleep(0.1)  # until the old lease passes
        assert newcomer.token == 2

    asyncio.run(asyncio.wait_for(scenario(), 30))
    assert scalar(fault_server.dsn(fault_db), "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


LEASE = 3.0


def test_a_worker_through_pgbouncer_runs_every_job_once_and_crashes_never(fault_server, fault_db, bouncer):
    dsn = fault_server.dsn(fault_db)
    effects, naps = 40, 40
    plant(dsn, effects, naps, hold=0.05, nap=0.05)
    workers = [fleet.start(bouncer.dsn(fault_db), "--concurrency", "4", lease=LEASE) for _ in range(2)]
    try:
        settle(dsn, effects + naps)
        assert_exactly_once(dsn, effects, effects + naps)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO pgsteady.jobs (queue, task, args, max_attempts) VALUES "
                         "('default', 'leash', '{}', 5)")
        settle(dsn, effects + naps + 1)
        # The worker's leash holds in its task transactions, whatever the pool mode.
        assert scalar(dsn, "SELECT n FROM effects WHERE n > %s", [effects]) == LEASE * 1000
        assert scalar(dsn, "SELECT count(*) FROM pgsteady.leader WHERE expires_at > now()") == 1
    finally:
        logs = [stop(w, signal.SIGTERM) for w in workers]
    assert all(w.returncode == 0 for w in workers), logs
    assert not any("Traceback" in log or 'prepared statement "_pg' in log for log in logs), logs
    # Auto-detected, and the transaction-pooling rules are the ones safe under both modes.
    assert all("LISTEN cannot work through it" in log for log in logs), logs


def test_run_chunks_transactions_are_on_the_workers_leash_through_a_transaction_pooler(fault_server, fault_db,
                                                                                     tx_bouncer):
    """Each chunk's transaction (ctx.connection() + ctx.transaction()) carries
    the leash SET LOCAL: a cut worker's chunk is ended by the server within a lease."""
    dsn = fault_server.dsn(fault_db)
    worker = fleet.start(tx_bouncer.dsn(fault_db), "--concurrency", "2", lease=LEASE)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("INSERT INTO pgsteady.jobs (queue, task, args, max_attempts) VALUES "
                         "('default', 'chunk_leash', '{\"chunks\": 3}', 5)")
        settle(dsn, 1)
    finally:
        log = stop(worker, signal.SIGTERM)
    assert "a connection pooler is in front" in log, log  # detected: the transaction rules apply
    with psycopg.connect(dsn, autocommit=True) as conn:
        seen = [r[0] for r in conn.execute("SELECT n FROM effects ORDER BY at")]
    assert seen == [LEASE * 1000] * 3, seen


def test_a_direct_listen_dsn_wakes_a_worker_behind_a_transaction_pooler(fault_server, fault_db, tx_bouncer):
    dsn = fault_server.dsn(fault_db)
    worker = fleet.start(tx_bouncer.dsn(fault_db), "--poll", "600", "--listen-dsn", dsn, lease=LEASE)
    try:
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
                                       "'pgsteady listen %' AND wait_event = 'ClientRead'"), what="the listener")
        plant(dsn, 1)
        settle(dsn, 1, timeout=60)  # woken by the notification: the poll is ten minutes away
    finally:
        log = stop(worker, signal.SIGTERM)
    assert "notifications do not reach" not in log and "LISTEN cannot work" not in log, log


def test_a_listen_dsn_through_the_pooler_warns_and_the_worker_still_polls(fault_server, fault_db, tx_bouncer):
    dsn = fault_server.dsn(fault_db)
    through = tx_bouncer.dsn(fault_db)
    worker = fleet.start(through, "--poll", "0.5", "--listen-dsn", through, lease=LEASE)
    try:
        wait_until(lambda: "notifications do not reach" in fleet.output(worker), timeout=60,
                   what="the warning that notifications never arrive")
        plant(dsn, 3)
        settle(dsn, 3, timeout=60)
    finally:
        stop(worker, signal.SIGTERM)


def test_the_claim_plan_holds_through_a_transaction_pooler(fault_server, fault_db, tx_bouncer):
    """The claimer's settings arrive by SET LOCAL in the claim's transaction:
    the claim still walks its index in order, without sort or bitmap."""
    app = App(dsn=fault_server.dsn(fault_db))
    app.task(lambda i: None, name="t")
    app.enqueue_many([("t", {"i": i}) for i in range(20_000)])
    app.close()
    link = Link(tx_bouncer.dsn(fault_db), settings=CLAIM_SESSION_SETTINGS)
    with link.connect(autocommit=True) as conn, link.transaction(conn):
        assert link.per_transaction
        plan = json.dumps(conn.execute("EXPLAIN (FORMAT JSON) " + Q.complete_and_claim, dict(
            queues=None, limit=10, lease=timedelta(seconds=30), worker_id="w", release=None,
            ids=[], tokens=[])).fetchone()[0])
    assert "jobs_claim_idx" in plan and "Sort" not in plan and "Bitmap" not in plan, plan


def test_migrate_status_and_jobs_work_through_a_transaction_pooler(fault_server, tx_bouncer):
    from ..conftest import _create_db, _drop_db
    from ..test_cli import pgsteady

    name = f"f_mig_{uuid.uuid4().hex[:8]}"
    _create_db(fault_server.dsn(), name)
    try:
        through = tx_bouncer.dsn(name)
        for command in (["migrate"], ["migrate"], ["jobs", "list", "--json"]):
            r = pgsteady("--dsn", through, *command)
            assert r.returncode == 0, r.stderr
        status = pgsteady("--dsn", through, "status", "--json")
        assert json.loads(status.stdout)["up"]["schema"]["current"] is True, status.stdout
        assert tx_bouncer.server.password not in status.stdout + status.stderr
    finally:
        _drop_db(fault_server.dsn(), name)
