"""How long each dashboard page takes on the server with a big history.

    .venv/bin/python -m bench.dashboard --dsn postgresql://postgres@127.0.0.1:5432/postgres \\
        [--db pgsteady_dash_bench] [--reuse] [--jobs 10000000] [--days 1] [--tables 500] [--runs 7]

Builds a database named --db on the server of --dsn (dropping one of that
name first, unless --reuse finds one already built with the same --jobs):

- --jobs finished jobs whose endings are spread evenly over the last --days
  (ids grow with time, as they do when jobs are enqueued): four queues of
  unequal traffic (default 50%, emails 30%, reports 15%, webhooks 5%), 30
  tasks, 96% succeeded, 3% failed after three attempts (with their errors
  and events, and a burst of failures of one task in the last hour), 1%
  cancelled; one job in ten has an idempotency key; then a backlog of
  20,000 waiting jobs, 200 running ones, 20 workers, a leader and a
  deploy mark every two hours. It is planted with generate_series in a few statements, in
  one transaction with the jobs table's secondary indexes dropped and
  rebuilt at the end (as a restore would), then analysed;
- the counter pass over the last 24 hours, as the maintenance leader runs it;
- --tables x 10 indexes as bench/indexes_5000.py builds them (500: 5,000).

Then every page is timed in-process (Starlette's TestClient: routing, the
reads and the rendering, without a network): one load to warm the caches
and the plans (its time is printed as first_ms), then --runs loads; the
median and the maximum per page are printed as one JSON object. The target is under 300 ms per page; this is a
probe, nothing asserts. The history is relative to the time it was built:
with --reuse, "the last hour" is the hour before the build (the counters'
watermark), and the age of the build is printed with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from datetime import datetime, timezone

import psycopg
from psycopg import sql

from pgsteady.database import resolve_dsn, with_dbname
from pgsteady.migrations import migrate
from pgsteady.monitoring import CounterPass
from pgsteady.queries import for_schema

from . import indexes_5000, status_probe

CHUNK = 2_000_000
# One entry of jobs.errors as the worker writes it (worker.sql, fail_job).
ERROR = ("jsonb_build_object('attempt', {k}, 'at', s.f - interval '{m} minutes', 'error', s.message, "
         "'traceback', 'Traceback (most recent call last):\\n  File \"app/tasks.py\", line 42\\n' || s.message, "
         "'worker', 'w' || mod(g, 20), 'release', 'v1')")
QUEUES = ("CASE WHEN mod(g, 20) < 10 THEN 'default' WHEN mod(g, 20) < 16 THEN 'emails' "
          "WHEN mod(g, 20) < 19 THEN 'reports' ELSE 'webhooks' END")


# A deploy every two hours of the day (v1.1 ... v1.11), the last, v2, an hour ago.
DEPLOYS = """
    INSERT INTO pgsteady.deploys (version, marked_at, marked_by)
    SELECT CASE WHEN h = 1 THEN 'v2' ELSE 'v1.' || (12 - h / 2) END, now() - make_interval(hours => h), 'bench'
    FROM generate_series(1, 23, 2) AS h
"""


def plant(conn: psycopg.Connection, jobs: int, days: int) -> dict[str, float]:
    """The history, in one transaction (an interrupted build leaves nothing)."""
    t0 = time.perf_counter()
    conn.execute("SET maintenance_work_mem = '512MB'")
    conn.execute("SET synchronous_commit = off")
    with conn.transaction():
        secondary = [r[0] for r in conn.execute(
            "SELECT indexdef FROM pg_indexes i WHERE schemaname = 'pgsteady' AND tablename = 'jobs' "
            "AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conname = i.indexname)")]
        for (name,) in conn.execute(
                "SELECT indexname FROM pg_indexes i WHERE schemaname = 'pgsteady' AND tablename = 'jobs' "
                "AND NOT EXISTS (SELECT FROM pg_constraint c WHERE c.conname = i.indexname)").fetchall():
            conn.execute(sql.SQL("DROP INDEX pgsteady.{}").format(sql.Identifier(name)))
        conn.execute("ALTER TABLE pgsteady.jobs DISABLE TRIGGER USER")
        for start in range(1, jobs + 1, CHUNK):
            hi = min(jobs, start + CHUNK - 1)
            # Job g ends at a point spread evenly over the last `days`; its
            # queue, task and outcome follow from g (through hashint8, so that
            # every task fails now and then) and the mix is the same each build. In
            # the last hour one task in thirty (t7) fails one time in four.
            conn.execute(
                f"""
                INSERT INTO pgsteady.jobs (queue, task, args, key, state, attempt, max_attempts, run_at,
                                           created_at, started_at, finished_at, release, worker_id, errors)
                SELECT {QUEUES}, s.task,
                       jsonb_build_object('n', g, 'user_id', mod(g, 100003),
                                          'email', 'user' || mod(g, 100003) || '@example.com', 'token', md5(g::text)),
                       CASE WHEN mod(g, 10) = 0 THEN 'order-' || g END,
                       s.state::pgsteady.job_state, CASE WHEN s.state = 'failed' THEN 3 ELSE 1 END, 3,
                       s.f - s.w - s.r, s.f - s.w - s.r, s.f - s.r, s.f,
                       CASE WHEN s.f > now() - interval '1 hour' THEN 'v2' ELSE 'v1' END, 'w' || (mod(g, 20)),
                       CASE WHEN s.state = 'failed' THEN jsonb_build_array(
                           {ERROR.format(k=1, m=2)},
                           {ERROR.format(k=2, m=1)},
                           {ERROR.format(k=3, m=0)}) ELSE '[]' END
                FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g,
                LATERAL (SELECT now() - %(span)s::interval * (1 - g::float8 / %(jobs)s) AS f,
                                make_interval(secs => 0.01 + (mod(g, 97)) / 40.0) AS r,
                                make_interval(secs => 0.005 + (mod(g, 89)) / 20.0) AS w,
                                mod(abs(hashint8(g + 1000000007)), 100) AS u,  -- outcome, apart from the task
                                'app.tasks.t' || mod(abs(hashint8(g)), 30) AS task,
                                CASE WHEN mod(g, 7) = 0 THEN 'SMTPError: ' || (421 + mod(g, 3)) || ' try later'
                                     WHEN mod(g, 7) < 4 THEN 'TimeoutError: upstream took longer than 30 s'
                                     ELSE 'KeyError: ''customer_' || (mod(g, 5)) || '''' END AS message) AS s0,
                LATERAL (SELECT s0.*, CASE
                    WHEN s0.u < 3 OR (s0.task = 'app.tasks.t7' AND s0.f > now() - interval '1 hour'
                                      AND mod(g, 4) = 0) THEN 'failed'
                    WHEN s0.u = 3 THEN 'cancelled' ELSE 'succeeded' END AS state) AS s
                """,
                dict(lo=start, hi=hi, jobs=jobs, span=f"{days} days"))
            print(f"  planted {hi:,} jobs ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        # Failed jobs: two retries and a final failure each; cancelled ones one event.
        conn.execute(
            """
            INSERT INTO pgsteady.events (created_at, job_id, attempt, worker_id, release, kind, message)
            SELECT j.finished_at - make_interval(mins => 3 - a), j.id, a, j.worker_id, j.release,
                   CASE WHEN a < 3 THEN 'retry_scheduled' ELSE 'failed' END, j.errors -> (a - 1) ->> 'error'
            FROM pgsteady.jobs j, generate_series(1, 3) AS a WHERE j.state = 'failed'
            UNION ALL
            SELECT j.finished_at, j.id, 1, 'cli', NULL, 'cancelled', 'cancelled by hand'
            FROM pgsteady.jobs j WHERE j.state = 'cancelled'
            """)
        print(f"  planted events ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
        conn.execute(
            f"""
            INSERT INTO pgsteady.jobs (queue, task, args, max_attempts, run_at, created_at)
            SELECT {QUEUES}, 'app.tasks.t' || (mod(g, 30)), jsonb_build_object('n', g), 3,
                   now() - make_interval(secs => mod(g, 600)), now() - make_interval(secs => mod(g, 600))
            FROM generate_series(1, 20000) AS g
            """)
        conn.execute(
            f"""
            INSERT INTO pgsteady.jobs (queue, task, args, state, attempt, max_attempts, run_at, created_at,
                                       started_at, lease_token, lease_expires_at, worker_id, release)
            SELECT {QUEUES}, 'app.tasks.t' || (mod(g, 30)), '{{}}', 'running', 1, 3, now(), now(),
                   now(), gen_random_uuid(), now() + interval '30 seconds', 'w' || (mod(g, 20)), 'v2'
            FROM generate_series(1, 200) AS g
            """)
        conn.execute("ALTER TABLE pgsteady.jobs ENABLE TRIGGER USER")
        for definition in secondary:
            t1 = time.perf_counter()
            conn.execute(definition)  # as pg_indexes gives it back, from our own schema
            print(f"  {definition.split(' ON ')[0]} ({time.perf_counter() - t1:.0f} s)", file=sys.stderr)
        conn.execute(
            """
            INSERT INTO pgsteady.workers (id, host, pid, queues, concurrency, release, started_at, heartbeat_at)
            SELECT 'w' || g, 'host' || (mod(g, 5)), 1000 + g, NULL, 10, 'v2', now() - interval '1 hour', now()
            FROM generate_series(0, 19) AS g
            """)
        conn.execute("INSERT INTO pgsteady.leader (name, worker_id) VALUES ('maintenance', 'w0')")
        conn.execute(DEPLOYS)
    planted = time.perf_counter() - t0
    conn.execute("VACUUM ANALYZE pgsteady.jobs")
    conn.execute("VACUUM ANALYZE pgsteady.events")
    return {"plant_seconds": round(planted, 1), "vacuum_seconds": round(time.perf_counter() - t0 - planted, 1)}


def pages(conn: psycopg.Connection) -> dict[str, str]:
    failed = conn.execute("SELECT max(id) FROM pgsteady.jobs WHERE state = 'failed'").fetchone()[0]
    newest = conn.execute("SELECT max(id) FROM pgsteady.jobs").fetchone()[0]
    return {
        "overview": "/",
        "queues": "/queues",
        "jobs": "/jobs",
        "jobs?state=failed": "/jobs?state=failed",
        "jobs?state=waiting": "/jobs?state=waiting",
        "jobs?queue=webhooks": "/jobs?queue=webhooks",
        "jobs?task": "/jobs?task=app.tasks.t7",
        "jobs?queue&window=1h": "/jobs?queue=emails&window=1h",
        "jobs?failed&task&24h": "/jobs?state=failed&task=app.tasks.t3&window=24h",
        "jobs?text&window=1h": "/jobs?q=user42%40&window=1h",
        "jobs?key": "/jobs?key=order-1000",
        "jobs?key (no match)": "/jobs?key=none-such",
        "jobs page 2": f"/jobs?before={newest - 50}",
        "job": f"/jobs/{failed}",
        "workers": "/workers",
        "schedules": "/schedules",
        "indexes": "/indexes",
        "changes": "/changes",
        "deploys": "/deploys",
    }


def build(server: str, name: str, a: argparse.Namespace) -> dict:
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = with_dbname(server, name)
    migrate(dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        out: dict = plant(conn, a.jobs, a.days)
    counted, seconds = asyncio.run(status_probe.count(dsn, CounterPass(for_schema("pgsteady"))))
    out["backfill"] = {"attempts": counted, "seconds": round(seconds, 1)}
    t0 = time.perf_counter()
    indexes_5000.TABLES = a.tables
    indexes_5000.build(dsn)
    out["index_tables_seconds"] = round(time.perf_counter() - t0, 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE public.dashboard_bench (jobs bigint, days int, tables int, "
                     "built_at timestamptz DEFAULT now())")
        conn.execute("INSERT INTO public.dashboard_bench (jobs, days, tables) VALUES (%s, %s, %s)",
                     (a.jobs, a.days, a.tables))
    return out


def built(server: str, name: str, a: argparse.Namespace) -> datetime | None:
    """When the database of this name was built with these sizes, if it was."""
    try:
        with psycopg.connect(with_dbname(server, name), autocommit=True) as conn:
            row = conn.execute("SELECT built_at FROM public.dashboard_bench WHERE jobs = %s AND days = %s "
                               "AND tables = %s", (a.jobs, a.days, a.tables)).fetchone()
    except psycopg.Error:
        return None
    return row[0] if row else None


def time_pages(dsn: str, runs: int, only: list[str] | None, profile: bool = False) -> dict:
    from starlette.testclient import TestClient

    from pgsteady.dashboard import create_app

    with psycopg.connect(dsn, autocommit=True) as conn:
        paths = pages(conn)
    app = create_app(dsn)
    timings = {}
    with TestClient(app, base_url="http://127.0.0.1") as client:
        for label, path in paths.items():
            if only and label not in only:
                continue
            t0 = time.perf_counter()
            r = client.get(path)
            first = time.perf_counter() - t0
            if r.status_code != 200:
                timings[label] = {"status": r.status_code}
                continue
            seconds = []
            profiler = _profiler() if profile else None
            for _ in range(runs):
                t0 = time.perf_counter()
                client.get(path)
                seconds.append(time.perf_counter() - t0)
            if profiler is not None:
                profiler.stop()
                print(profiler.output_text(unicode=False, show_all=False), file=sys.stderr)
            timings[label] = {"median_ms": round(statistics.median(seconds) * 1000, 1),
                              "max_ms": round(max(seconds) * 1000, 1), "first_ms": round(first * 1000, 1)}
            print(f"  {label}: {timings[label]}", file=sys.stderr)
    app.dashboard.close()
    return timings


def _profiler():
    # pyinstrument is a tool of this probe, not a dependency: `pip install pyinstrument` into the venv.
    from pyinstrument import Profiler
    profiler = Profiler(async_mode="disabled")
    profiler.start()
    return profiler


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dsn", help="a server to build on (its database name is ignored); default: PGSTEADY_DSN "
                                 "or the embedded server")
    p.add_argument("--db", default="pgsteady_dash_bench", help="the database to build (dropped first)")
    p.add_argument("--reuse", action="store_true", help="time the database --db if it was built with these sizes")
    p.add_argument("--jobs", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=1)
    p.add_argument("--tables", type=int, default=500, help="x 10 indexes each")
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--page", action="append", help="time only this page (its label); repeatable")
    p.add_argument("--profile", action="store_true", help="print a pyinstrument profile of each page's loads")
    a = p.parse_args()
    server = with_dbname(resolve_dsn(a.dsn), "postgres")
    dsn = with_dbname(server, a.db)
    out: dict = {"jobs": a.jobs, "days": a.days}
    built_at = built(server, a.db, a) if a.reuse else None
    if built_at is None:
        out["build"] = build(server, a.db, a)
        built_at = built(server, a.db, a)
    t0 = time.perf_counter()
    if migrate(dsn):  # a database built by an older pgsteady: its new migrations, timed
        out["migrated_seconds"] = round(time.perf_counter() - t0, 1)
    with psycopg.connect(dsn, autocommit=True) as conn:
        out["indexes"] = conn.execute("SELECT count(*) FROM pg_index").fetchone()[0]
        out["server"] = conn.execute("SHOW server_version").fetchone()[0]
    out["built_minutes_ago"] = round((datetime.now(timezone.utc) - built_at).total_seconds() / 60)
    out["load_average"] = [round(x, 2) for x in os.getloadavg()]
    out["pages"] = time_pages(dsn, a.runs, a.page, a.profile)
    out["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
