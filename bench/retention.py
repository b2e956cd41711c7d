"""Table health under retention: do the jobs and events tables stop growing?

    .venv/bin/python bench/retention.py [--jobs 1000000] [--rounds 20] [--day 60] [--dsn DSN]

Processes ``--jobs`` no-op jobs through a real Worker (1% of them fail once, so
the history has rows too), in rounds of bulk enqueue + drain, with the default
retention *rules* on a compressed clock: one "day" is ``--day`` seconds, so
succeeded jobs are pruned after one day and failed/cancelled jobs and event
partitions after 14. Pruning and partition upkeep run as the leader's duties,
exactly as in production; autovacuum has its default settings.

After each round it records the size of the jobs table and its indexes, the
events table (all partitions) and the live rows, and prints a JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import timedelta

import psycopg
from psycopg import sql

from pgsteady import App, Worker
from pgsteady.database import resolve_dsn, with_dbname
from pgsteady.migrations import migrate

SIZES = """
SELECT
  pg_table_size('pgsteady.jobs') AS jobs_table,
  pg_indexes_size('pgsteady.jobs') AS jobs_indexes,
  (SELECT count(*) FROM pgsteady.jobs) AS jobs_rows,
  (SELECT coalesce(sum(pg_column_size(j.*)), 0)::bigint FROM pgsteady.jobs j) AS jobs_live_bytes,
  (SELECT coalesce(sum(pg_table_size(c.oid) + pg_indexes_size(c.oid)), 0)::bigint
     FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'pgsteady.events'::regclass) AS events_total,
  (SELECT count(*) FROM pgsteady.events) AS events_rows,
  (SELECT coalesce(sum(pg_column_size(e.*)), 0)::bigint FROM pgsteady.events e) AS events_live_bytes,
  (SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = 'pgsteady.jobs'::regclass) AS jobs_dead_rows,
  (SELECT autovacuum_count FROM pg_stat_user_tables WHERE relid = 'pgsteady.jobs'::regclass) AS jobs_autovacuums
"""


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=1_000_000)
    p.add_argument("--rounds", type=int, default=20)
    p.add_argument("--day", type=float, default=60.0, help="seconds in one simulated day")
    p.add_argument("--concurrency", type=int, default=50)
    p.add_argument("--vacuum-scale-factor", type=float,
                   help="set autovacuum_vacuum_scale_factor on the jobs table (default: the server's)")
    p.add_argument("--dsn")
    a = p.parse_args()
    server = with_dbname(resolve_dsn(a.dsn), "postgres")
    db = f"bench_retention_{uuid.uuid4().hex[:6]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    dsn = with_dbname(server, db)
    day = timedelta(seconds=a.day)
    try:
        migrate(dsn)
        if a.vacuum_scale_factor is not None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("ALTER TABLE pgsteady.jobs SET (autovacuum_vacuum_scale_factor = {})")
                             .format(sql.Literal(a.vacuum_scale_factor)))
        app = App(dsn=dsn)

        @app.task(name="noop", max_attempts=3)
        def noop(ctx, i: int) -> None:
            if i % 100 == 0 and ctx.attempt == 1:
                raise RuntimeError("fails once, to leave history behind")

        per_round = a.jobs // a.rounds
        report = []
        started = time.monotonic()
        for r in range(a.rounds):
            app.enqueue_many([("noop", {"i": i}) for i in range(per_round)])
            worker = Worker(app, concurrency=a.concurrency, poll_interval=0.05,
                            retention={"succeeded": day, "failed": 14 * day, "cancelled": 14 * day})
            for svc in worker.maintenance.services:
                svc.interval = min(svc.interval, max(a.day / 6, 1.0))
            asyncio.run(worker.run(until_idle=True))
            with psycopg.connect(dsn, autocommit=True) as conn:
                row = conn.execute(SIZES).fetchone()
            entry = dict(round=r + 1, processed=(r + 1) * per_round, seconds=round(time.monotonic() - started, 1),
                         **dict(zip(["jobs_table", "jobs_indexes", "jobs_rows", "jobs_live_bytes",
                                     "events_total", "events_rows", "events_live_bytes", "jobs_dead_rows",
                                     "jobs_autovacuums"], row)))
            report.append(entry)
            print(json.dumps(entry), flush=True)
        app.close()
        print(json.dumps({"jobs": a.jobs, "day_seconds": a.day, "rounds": report[-1]}, indent=2))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


if __name__ == "__main__":
    main()
