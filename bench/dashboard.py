"""How long each dashboard page takes on the server with a big history.

    .venv/bin/python -m bench.dashboard [--jobs 10000000] [--tables 500] [--runs 5] [--dsn DSN]

Plants a scratch database the way bench/status_probe.py does (--jobs
finished jobs over 10 days with their events, a backlog, running jobs, 20
workers, a deploy mark), runs the counter pass as the leader would, adds
--tables x 10 indexes as bench/indexes_5000.py does (500 tables: 5,000
indexes), and then times every page of the dashboard in-process (Starlette's
TestClient, so the figure is the server's time: routing, the reads and the
rendering, without a network). Each page is loaded once to warm the caches
and plans, then --runs times; the median and the maximum are printed as one
JSON object. The target is under 300 ms per page; this is a probe, nothing
asserts. The database is dropped at the end unless --keep.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import uuid

import psycopg
from psycopg import sql

from pgsteady.database import resolve_dsn, with_dbname
from pgsteady.migrations import migrate
from pgsteady.monitoring import CounterPass
from pgsteady.queries import for_schema

from . import indexes_5000, status_probe


def pages(conn: psycopg.Connection) -> dict[str, str]:
    failed = conn.execute("SELECT max(id) FROM pgsteady.jobs WHERE state = 'failed'").fetchone()[0]
    newest = conn.execute("SELECT max(id) FROM pgsteady.jobs").fetchone()[0]
    return {
        "overview": "/",
        "queues": "/queues",
        "jobs": "/jobs",
        "jobs?state=failed": "/jobs?state=failed",
        "jobs?queue&window=1h": "/jobs?queue=q1&window=1h",
        "jobs?text&window=1h": "/jobs?q=%22n%22%3A%201&window=1h",
        "jobs?key": "/jobs?key=none-such",
        "jobs page 2": f"/jobs?before={newest - 50}",
        "job": f"/jobs/{failed}",
        "workers": "/workers",
        "schedules": "/schedules",
        "indexes": "/indexes",
        "changes": "/changes",
        "deploys": "/deploys",
    }


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--tables", type=int, default=500, help="x 10 indexes each")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--dsn")
    p.add_argument("--keep", action="store_true")
    a = p.parse_args()
    from starlette.testclient import TestClient

    from pgsteady.dashboard import create_app

    server = with_dbname(resolve_dsn(a.dsn), "postgres")
    name = f"pgsteady_dashboard_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = with_dbname(server, name)
    try:
        migrate(dsn)
        out: dict = {"jobs": a.jobs, **status_probe.plant(dsn, a.jobs, a.days, 30)}
        counted, seconds = asyncio.run(status_probe.count(dsn, CounterPass(for_schema("pgsteady"))))
        out["backfill"] = {"attempts": counted, "seconds": round(seconds, 1)}
        indexes_5000.TABLES = a.tables
        indexes_5000.build(dsn)
        with psycopg.connect(dsn, autocommit=True) as conn:
            out["indexes"] = conn.execute("SELECT count(*) FROM pg_index").fetchone()[0]
            paths = pages(conn)
        app = create_app(dsn)
        timings = {}
        with TestClient(app, base_url="http://127.0.0.1") as client:
            for label, path in paths.items():
                r = client.get(path)
                if r.status_code != 200:
                    timings[label] = {"status": r.status_code}
                    continue
                seconds = []
                for _ in range(a.runs):
                    t0 = time.perf_counter()
                    client.get(path)
                    seconds.append(time.perf_counter() - t0)
                timings[label] = {"median_ms": round(statistics.median(seconds) * 1000, 1),
                                  "max_ms": round(max(seconds) * 1000, 1)}
                print(f"  {label}: {timings[label]}", file=sys.stderr)
        app.dashboard.close()
        out["pages"] = timings
        print(json.dumps(out, indent=2))
    finally:
        if a.keep:
            print(f"kept: {dsn}", file=sys.stderr)
        else:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
