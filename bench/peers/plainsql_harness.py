"""The plain-SQL reference queue: what PostgreSQL itself allows.

One table, no leases, no history. Two ways to claim, both reported:

    select  claim a batch with SELECT ... FOR UPDATE SKIP LOCKED, run each
            job's Python function, delete the batch and commit, all in one
            transaction (a crash rolls the claim back, so nothing is lost,
            but nothing is fenced or recorded either)
    update  claim a batch with one UPDATE ... RETURNING over a FOR UPDATE
            SKIP LOCKED subquery and commit, run the jobs, then DELETE them
            by id and commit: two short transactions per batch, no
            transaction open while jobs run (the shape most hand-written
            queues have; a crash leaves the batch "running" for ever)

Enqueue notifies in the same statement; an idle worker waits on LISTEN
with a polling fallback.
"""

from __future__ import annotations

import signal
import time

import common
import psycopg
from psycopg.types.json import Jsonb

SCHEMA = """
CREATE TABLE IF NOT EXISTS bench_queue (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    task       text NOT NULL,
    args       jsonb NOT NULL,
    running    boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
)"""
ENQUEUE_ONE = """
WITH i AS (INSERT INTO bench_queue (task, args) VALUES ('noop', %(args)s) RETURNING id)
SELECT pg_notify('bench_queue', ''), id FROM i"""
ENQUEUE_MANY = """
WITH i AS (INSERT INTO bench_queue (task, args) SELECT 'noop', a FROM unnest(%(args)s::jsonb[]) AS a RETURNING id)
SELECT pg_notify('bench_queue', '') WHERE EXISTS (SELECT 1 FROM i)"""
CLAIM = "SELECT id, args FROM bench_queue ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED"
DELETE = "DELETE FROM bench_queue WHERE id = ANY(%(ids)s)"
CLAIM_UPDATE = """
UPDATE bench_queue SET running = true
WHERE id IN (SELECT id FROM bench_queue WHERE NOT running ORDER BY id LIMIT %(limit)s FOR UPDATE SKIP LOCKED)
RETURNING id, args"""


def noop(i: int = 0, t: float | None = None) -> None:
    common.started(t)


TASKS = {"noop": noop}


def worker(batch: int, style: str = "select", poll: float = 1.0) -> None:
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    listen = psycopg.connect(common.dsn(), autocommit=True)
    listen.execute("LISTEN bench_queue")
    conn = psycopg.connect(common.dsn())
    while not stop:
        if style == "update":
            with conn.transaction():
                rows = conn.execute(CLAIM_UPDATE, {"limit": batch}).fetchall()
            for _, args in rows:
                TASKS["noop"](**args)
            if rows:
                with conn.transaction():
                    conn.execute(DELETE, {"ids": [r[0] for r in rows]})
        else:
            with conn.transaction():
                rows = conn.execute(CLAIM, {"limit": batch}).fetchall()
                for _, args in rows:
                    TASKS["noop"](**args)
                if rows:
                    conn.execute(DELETE, {"ids": [r[0] for r in rows]})
        if len(rows) < batch:
            # The listen connection is used for nothing else, so a notification
            # sent while we were claiming waits in its socket and wakes us here.
            for _ in listen.notifies(timeout=poll, stop_after=1):
                pass


def main() -> None:
    a = common.parse()
    if a.command == "worker":
        worker(a.batch, a.style)
        return
    with psycopg.connect(common.dsn(), autocommit=True) as conn:
        if a.command == "setup":
            conn.execute(SCHEMA)
            common.emit(ok=True)
        elif a.command == "enqueue":
            args = [Jsonb(common.job_args(i)) for i in range(a.n)]
            start = time.perf_counter()
            if a.mode == "one":
                for arg in args:
                    conn.execute(ENQUEUE_ONE, {"args": arg})
            else:
                for part in common.chunks(args, a.chunk):
                    conn.execute(ENQUEUE_MANY, {"args": part})
            common.emit(seconds=time.perf_counter() - start, n=a.n)
        elif a.command == "latency":
            common.latency_probes(a.n, a.gap, lambda args: conn.execute(ENQUEUE_ONE, {"args": Jsonb(args)}))


if __name__ == "__main__":
    main()
