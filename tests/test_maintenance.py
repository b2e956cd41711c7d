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


async def _leader_step(dsn: str, leader: Leader, step: str = "keep"):
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await getattr(leader, step)(conn)


def _expire_lease(dsn: str) -> None:
    """What the passing of the leader's lease looks like to the others."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.leader SET expires_at = now() - interval '1 second'")


def test_one_leader_at_a_time_and_a_lapsed_lease_moves_with_a_new_fencing_token(dsn):
    async def scenario() -> None:
        a, b = Leader(Q, "A", lease=30), Leader(Q, "B", lease=30)
        assert await _leader_step(dsn, a) and a.holds()
        assert not await _leader_step(dsn, b) and not b.holds()  # A's lease runs
        assert await _leader_step(dsn, a)  # renewed
        _expire_lease(dsn)  # A died, or lost its link, or froze
        assert await _leader_step(dsn, b) and b.token == a.token + 1
        assert not await _leader_step(dsn, a) and not a.holds()  # fenced: A learns at its next renewal
        assert scalar(dsn, "SELECT worker_id FROM pgsteady.leader") == "B"

    asyncio.run(scenario())


def test_a_resigning_leader_hands_over_at_once_and_the_token_keeps_counting(dsn):
    async def scenario() -> None:
        a, b = Leader(Q, "A", lease=30), Leader(Q, "B", lease=30)
        assert await _leader_step(dsn, a)
        first = a.token
        await _leader_step(dsn, a, "release")
        assert not a.is_leader
        assert await _leader_step(dsn, b) and b.token == first + 1
        assert scalar(dsn, "SELECT count(*) FROM pgsteady.leader") == 1

    asyncio.run(scenario())


def test_a_leader_past_its_local_deadline_runs_no_duty_even_before_it_hears_from_the_server(dsn):
    async def scenario() -> None:
        a = Leader(Q, "A", lease=30)
        assert await _leader_step(dsn, a)
        a._deadline = 0.0  # what a SIGSTOP longer than the lease leaves behind
        assert not a.holds() and not a.is_leader

    asyncio.run(scenario())


def test_a_renewal_that_cannot_reach_the_server_keeps_the_lead_until_the_deadline(dsn):
    async def scenario() -> None:
        a = Leader(Q, "A", lease=30)
        assert await _leader_step(dsn, a)
        conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
        await conn.close()
        try:
            await a.renew(conn)
        except psycopg.Error:
            pass
        assert a.holds()  # one failed renewal is not the end: three fit in a lease
        a._deadline = 0.0
        assert not a.holds()

    asyncio.run(scenario())


def test_killing_the_leader_process_moves_its_duties_to_the_other_worker(dsn):
    app = "tests.apps.fleet_app:app"
    lease = 3
    workers = [start_worker(dsn, app, "--lease", str(lease)) for _ in range(2)]
    try:
        # Both must be up before the kill: a follower still starting (importing,
        # connecting) on a busy machine is what made this test flaky.
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pgsteady.workers") == 2, what="two workers")
        leader, token = wait_until(lambda: _leader_row(dsn), what="a leader")
        pid = int(leader.split(":")[1])
        victim = next(w for w in workers if w.pid == pid)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        new, new_token = wait_until(lambda: (row := _leader_row(dsn)) and row[0] != leader and row,
                                    timeout=30, what="a new leader")
        assert int(new.split(":")[1]) == next(w.pid for w in workers if w is not victim)
        assert new_token == token + 1  # one takeover, fenced
    finally:
        for w in workers:
            stop(w, signal.SIGTERM)


def _leader_row(dsn: str):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT worker_id, fencing_token FROM pgsteady.leader WHERE expires_at > now()").fetchone()
