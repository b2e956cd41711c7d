"""Through a real PgBouncer, in session and in transaction pool mode."""

from __future__ import annotations

import asyncio
import threading

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from pgsteady import App
from pgsteady.database import connect
from pgsteady.errors import ConfigError
from pgsteady.maintenance import Leader
from pgsteady.queries import for_schema
from pgsteady.topology import Link, leash_settings

from ..helpers import scalar, wait_until

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
