"""Planting histories for the monitoring tests.

A ``History`` writes jobs, events, workers and the leader row directly, with
the timestamps a real run would have left, then ``count()`` runs the real
counter pass over them. Times are given relative to the database's now() so
that tests do not depend on the clock of the test process.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import psycopg
import pytest

from pgsteady.monitoring.counters import CounterPass
from pgsteady.queries import for_schema

Q = for_schema("pgsteady")


class History:
    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.conn = psycopg.connect(dsn, autocommit=True)
        self.now: datetime = self.conn.execute("SELECT now()").fetchone()[0]

    def clock(self) -> datetime:
        """The database's time right now (later than ``now`` and than any pass so far)."""
        return self.conn.execute("SELECT clock_timestamp()").fetchone()[0]

    def ago(self, **delta: float) -> datetime:
        return self.now - timedelta(**delta)

    def succeeded(self, task: str, n: int, *, at: datetime, spread: timedelta = timedelta(0), queue: str = "default",
                  run: float = 0.1, wait: float = 0.05, release: str | None = "r1") -> None:
        """``n`` succeeded jobs finishing from ``at`` to ``at + spread``, each run and wait as given."""
        self.conn.execute(
            """
            INSERT INTO pgsteady.jobs (queue, task, args, state, attempt, max_attempts, run_at, created_at,
                                       started_at, finished_at, release, worker_id)
            SELECT %(queue)s, %(task)s, '{}', 'succeeded', 1, 5, f - %(run)s - %(wait)s, f - %(run)s - %(wait)s,
                   f - %(run)s, f, %(release)s, 'w-planted'
            FROM (SELECT %(at)s::timestamptz + %(spread)s::interval * (g::float8 / %(n)s) AS f
                  FROM generate_series(0, %(n)s - 1) AS g) AS s
            """,
            dict(queue=queue, task=task, n=n, at=at, spread=spread, release=release,
                 run=timedelta(seconds=run), wait=timedelta(seconds=wait)))

    def ended(self, task: str, n: int, kind: str, *, at: datetime, spread: timedelta = timedelta(0),
              queue: str = "default", message: str = "RuntimeError: boom", release: str | None = "r1",
              discard: bool = False) -> None:
        """``n`` jobs with one event each of ``kind`` (retry_scheduled, failed, rescued,
        late_write_rejected, cancelled). A failed one used its last attempt unless ``discard``."""
        self.conn.execute(
            """
            WITH j AS (
                INSERT INTO pgsteady.jobs (queue, task, args, state, attempt, max_attempts, run_at, created_at)
                SELECT %(queue)s, %(task)s, jsonb_build_object('g', g), 'failed',
                       CASE WHEN %(discard)s THEN 1 ELSE 3 END, 3, %(at)s, %(at)s
                FROM generate_series(0, %(n)s - 1) AS g
                RETURNING id, (args->>'g')::int AS g, attempt
            )
            INSERT INTO pgsteady.events (created_at, job_id, attempt, worker_id, release, kind, message)
            SELECT %(at)s::timestamptz + %(spread)s::interval * (g::float8 / %(n)s), id, attempt, 'w-planted',
                   %(release)s, %(kind)s, %(message)s
            FROM j
            """,
            dict(queue=queue, task=task, n=n, at=at, spread=spread, kind=kind, message=message, release=release,
                 discard=discard))

    def waiting(self, n: int, *, queue: str = "default", task: str = "t", due: datetime) -> None:
        self.conn.execute(
            """
            INSERT INTO pgsteady.jobs (queue, task, args, max_attempts, run_at, created_at)
            SELECT %(queue)s, %(task)s, '{}', 3, %(due)s, %(due)s FROM generate_series(1, %(n)s)
            """, dict(queue=queue, task=task, n=n, due=due))

    def worker(self, worker_id: str, *, heartbeat: datetime, started: datetime | None = None,
               queues: list[str] | None = None, release: str | None = "r1", leader: bool = False,
               lease: timedelta = timedelta(seconds=60)) -> None:
        self.conn.execute(
            """
            INSERT INTO pgsteady.workers (id, host, pid, queues, concurrency, release, started_at, heartbeat_at)
            VALUES (%(id)s, 'host1', 4242, %(queues)s, 10, %(release)s, %(started)s, %(heartbeat)s)
            """, dict(id=worker_id, queues=queues, release=release, heartbeat=heartbeat,
                      started=started or heartbeat - timedelta(hours=1)))
        if leader:
            self.conn.execute(
                "INSERT INTO pgsteady.leader (name, worker_id, elected_at, renewed_at, expires_at) "
                "VALUES ('maintenance', %s, %s, %s, %s)",
                [worker_id, heartbeat - timedelta(hours=1), heartbeat, heartbeat + lease])

    def healthy_fleet(self) -> None:
        """One live worker that leads the maintenance duties."""
        self.worker("w-live", heartbeat=self.now, leader=True)

    def deploy(self, version: str, *, at: datetime, note: str | None = None) -> None:
        self.conn.execute("INSERT INTO pgsteady.deploys (version, note, marked_at, marked_by) "
                          "VALUES (%s, %s, %s, 'tests')", [version, note, at])

    def count(self, **options) -> int:
        """Run the real counter pass until it is current (settle 0: everything planted counts)."""
        options.setdefault("settle", timedelta(0))
        return asyncio.run(_catch_up(self.dsn, CounterPass(Q, **options)))

    def close(self) -> None:
        self.conn.close()


async def _catch_up(dsn: str, counter: CounterPass) -> int:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        return await counter.catch_up(conn)


@pytest.fixture
def history(dsn):
    h = History(dsn)
    yield h
    h.close()
