"""How much the success path costs: enqueue and drain N no-op jobs, in-process.

    .venv/bin/python bench/success_path.py [--jobs 20000] [--concurrency 20] [--dsn DSN]

Reports enqueue rates (one by one, bulk), drain rate, and what the database
did per job: transactions committed, rows written to the history (0 expected:
the success path records no event). Uses a scratch database that it drops.
This is a quick probe; the side-by-side benchmark suite is a separate issue.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

import psycopg
from psycopg import sql

from pgsteady import App, Worker
from pgsteady.database import resolve_dsn, with_dbname
from pgsteady.migrations import migrate


def stat(dsn: str, db: str) -> tuple[int, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()") if conn.info.server_version >= 150000 else None
        return conn.execute("SELECT xact_commit, tup_inserted + tup_updated + tup_deleted FROM pg_stat_database "
                            "WHERE datname = %s", [db]).fetchone()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--async", dest="use_async", action="store_true", help="an async no-op task instead of a sync one")
    p.add_argument("--dsn")
    a = p.parse_args()
    server = with_dbname(resolve_dsn(a.dsn), "postgres")
    db = f"bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db)))
    dsn = with_dbname(server, db)
    try:
        migrate(dsn)
        app = App(dsn=dsn)

        if a.use_async:
            @app.task(name="noop")
            async def noop(i: int) -> None:
                return None
        else:
            @app.task(name="noop")
            def noop(i: int) -> None:
                return None

        t = time.perf_counter()
        for i in range(1000):
            app.enqueue("noop", {"i": i})
        one_by_one = 1000 / (time.perf_counter() - t)
        t = time.perf_counter()
        app.enqueue_many([("noop", {"i": i}) for i in range(a.jobs)])
        bulk = a.jobs / (time.perf_counter() - t)
        total = a.jobs + 1000
        before = stat(server, db)
        t = time.perf_counter()
        stats = asyncio.run(Worker(app, concurrency=a.concurrency, poll_interval=0.1).run(until_idle=True))
        drain = stats.succeeded / (time.perf_counter() - t)
        after = stat(server, db)
        with psycopg.connect(dsn) as conn:
            events = conn.execute("SELECT count(*) FROM pgsteady.events").fetchone()[0]
        app.close()
        print(json.dumps({
            "jobs": total, "succeeded": stats.succeeded,
            "enqueue_one_by_one_per_s": round(one_by_one), "enqueue_bulk_per_s": round(bulk),
            "drain_per_s": round(drain), "concurrency": a.concurrency,
            "commits_per_job": round((after[0] - before[0]) / total, 3),
            "rows_written_per_job": round((after[1] - before[1]) / total, 3),
            "history_rows": events,
        }, indent=2))
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(db)))


if __name__ == "__main__":
    main()
