"""Background duties: pruning, event partitions, leader election."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import timedelta

import psycopg

from pgsteady.maintenance import Leader, PartitionKeeper, Pruner
from pgsteady.queries import for_schema

from .helpers import scalar, start_worker, stop, wait_until

Q = for_schema("pgsteady")


async def _once(dsn: str, service) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await service.run_once(conn)


def test_pruner_deletes_by_state_retention_in_batches(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        plant = ("INSERT INTO pgsteady.jobs (queue, task, args, max_attempts, state, finished_at) "
                 "SELECT 'q', 't', jsonb_build_object(), 1, %s::pgsteady.job_state, now() - %s::interval "
                 "FROM generate_series(1, %s)")
        conn.execute(plant, ["succeeded", timedelta(days=2), 25])    # past 1 day: pruned
        conn.execute(plant, ["succeeded", timedelta(hours=2), 5])    # kept
        conn.execute(plant, ["failed", timedelta(days=15), 7])       # past 14 days: pruned
        conn.execute(plant, ["failed", timedelta(days=2), 3])        # kept
        conn.execute(plant, ["cancelled", timedelta(days=20), 4])    # pruned
        conn.execute("INSERT INTO pgsteady.jobs (queue, task, args, max_attempts) SELECT 'q', 't', jsonb_build_object(), 1")
    assert asyncio.run(_once(dsn, Pruner(Q, batch=10))) == 36
    with psycopg.connect(dsn) as conn:
        left = dict(conn.execute("SELECT state::text, count(*) FROM pgsteady.jobs GROUP BY 1").fetchall())
    assert left == {"succeeded": 5, "failed": 3, "waiting": 1}
    assert asyncio.run(_once(dsn, Pruner(Q, retention={"succeeded": timedelta(minutes=30)}))) == 5


def test_old_event_partitions_are_dropped_whole_and_new_ones_made_ahead(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE pgsteady.events_20200101 PARTITION OF pgsteady.events "
                     "FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-01-02 00:00+00')")
        conn.execute("INSERT INTO pgsteady.events (created_at, kind) VALUES ('2020-01-01 12:00+00', 'old')")
        conn.execute("DROP TABLE pgsteady.events_" + scalar(dsn, "SELECT to_char((now() AT TIME ZONE 'UTC')::date + 3, 'YYYYMMDD')"))
    assert asyncio.run(_once(dsn, PartitionKeeper(Q))) == 2  # one created, one dropped
    assert scalar(dsn, "SELECT to_regclass('pgsteady.events_20200101')") is None
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.events WHERE kind = 'old'") == 0


def test_one_leader_at_a_time_and_the_lock_moves_when_its_session_ends(dsn):
    async def scenario() -> None:
        a, b = Leader(dsn, Q, "A", stale=30), Leader(dsn, Q, "B", stale=30)
        assert await a.try_acquire() and not await b.try_acquire()
        assert await a.renew()
        await a._conn.close()  # the leader's process or connection dies
        assert not await a.renew() and not a.is_leader
        assert await b.try_acquire()
        assert scalar(dsn, "SELECT worker_id FROM pgsteady.leader") == "B"
        await b.release()
        assert scalar(dsn, "SELECT count(*) FROM pgsteady.leader") == 0

    asyncio.run(scenario())


def test_a_frozen_leader_is_ended_and_replaced(dsn):
    async def scenario() -> None:
        a, b = Leader(dsn, Q, "A", stale=5), Leader(dsn, Q, "B", stale=5)
        assert await a.try_acquire()
        assert not await b.try_acquire()  # A renewed just now
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("UPDATE pgsteady.leader SET renewed_at = now() - interval '6 seconds'")
        assert await b.try_acquire()  # A stopped renewing: B ends A's session and leads
        assert not await a.renew()  # A finds out when it wakes up
        await b.release()

    asyncio.run(scenario())


def test_killing_the_leader_process_moves_its_duties_within_the_lease(dsn):
    app = "tests.apps.fleet_app:app"
    lease = 3
    workers = [start_worker(dsn, app, "--lease", str(lease)) for _ in range(2)]
    try:
        leader = wait_until(lambda: scalar(dsn, "SELECT worker_id FROM pgsteady.leader"), what="a leader")
        pid = int(leader.split(":")[1])
        victim = next(w for w in workers if w.pid == pid)
        victim.send_signal(signal.SIGKILL)
        killed_at = scalar(dsn, "SELECT now()")
        new = wait_until(lambda: scalar(dsn, "SELECT worker_id FROM pgsteady.leader WHERE worker_id <> %s", [leader]),
                         timeout=30, what="a new leader")
        elected = scalar(dsn, "SELECT elected_at FROM pgsteady.leader")
        assert int(new.split(":")[1]) != pid and new.split(":")[1] != str(os.getpid())
        assert (elected - killed_at).total_seconds() < lease  # took over within the lease time
    finally:
        for w in workers:
            stop(w, signal.SIGTERM)
