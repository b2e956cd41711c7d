"""How fast `pgsteady status` answers with ten million jobs in the history.

    .venv/bin/python bench/status_probe.py [--jobs 10000000] [--days 10] [--tasks 30] [--dsn DSN] [--keep]

Plants a scratch database with --jobs finished jobs spread over --days (97%
succeeded, 2% failed after retries, 1% cancelled; their events), a backlog
of 20,000 waiting jobs, 200 running ones, 20 workers and a deploy mark an
hour ago; runs the counter pass over the last 24 hours as the maintenance
leader would; then times, on warm caches:

- `status` (monitoring.status.check, with a fresh connection each time, as
  the command does) and `status --json` through the real CLI process;
- one metrics scrape (read + render);
- one steady-state counter pass over 10 s of new work (1,000 jobs).

Prints one JSON object. This is a probe, not a timed test: nothing asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path

import psycopg
from psycopg import sql

from pgsteady.database import resolve_dsn, with_dbname
from pgsteady.migrations import migrate
from pgsteady.monitoring import CounterPass, metrics, status
from pgsteady.queries import for_schema

ROOT = Path(__file__).resolve().parent.parent
CHUNK = 500_000


def plant(dsn: str, jobs: int, days: int, tasks: int) -> dict[str, float]:
    t0 = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as conn:
        for start in range(0, jobs, CHUNK):
            n = min(CHUNK, jobs - start)
            # Job g finishes at a point spread evenly over the last `days`; its
            # task, queue and release follow from g so the mix is stable.
            conn.execute(
                """
                INSERT INTO pgsteady.jobs (queue, task, args, state, attempt, max_attempts, run_at, created_at,
                                           started_at, finished_at, release, worker_id)
                SELECT 'q' || (g %% 4), 'app.tasks.t' || (g %% %(tasks)s), jsonb_build_object('n', g),
                       s.state::pgsteady.job_state, CASE WHEN s.state = 'failed' THEN 3 ELSE 1 END, 3,
                       f - w - r, f - w - r, f - r, f,
                       CASE WHEN f > now() - interval '1 hour' THEN 'v2' ELSE 'v1' END, 'bench-worker'
                FROM generate_series(%(lo)s, %(hi)s) AS g,
                LATERAL (SELECT now() - %(span)s::interval * (1 - g::float8 / %(jobs)s) AS f,
                                make_interval(secs => 0.01 + (g %% 97) / 40.0) AS r,
                                make_interval(secs => 0.005 + (g %% 89) / 20.0) AS w,
                                CASE WHEN g %% 100 < 2 THEN 'failed' WHEN g %% 100 = 2 THEN 'cancelled'
                                     ELSE 'succeeded' END AS state) AS s
                """,
                dict(lo=start, hi=start + n - 1, jobs=jobs, tasks=tasks, span=f"{days} days"))
            print(f"  planted {start + n:,} jobs", file=sys.stderr)
        # Failed jobs: two retries and a final failure each; cancelled ones one event.
        conn.execute(
            """
            INSERT INTO pgsteady.events (created_at, job_id, attempt, worker_id, release, kind, message)
            SELECT j.finished_at - make_interval(mins => 3 - a), j.id, a, 'bench-worker', j.release,
                   CASE WHEN a < 3 THEN 'retry_scheduled' ELSE 'failed' END,
                   'SMTPError: ' || (400 + j.id % 7) || ' try later'
            FROM pgsteady.jobs j, generate_series(1, 3) AS a WHERE j.state = 'failed'
            UNION ALL
            SELECT j.finished_at, j.id, 1, 'cli', NULL, 'cancelled', 'cancelled by hand'
            FROM pgsteady.jobs j WHERE j.state = 'cancelled'
            """)
        conn.execute(
            """
            INSERT INTO pgsteady.jobs (queue, task, args, max_attempts, run_at, created_at)
            SELECT 'q' || (g %% 4), 'app.tasks.t' || (g %% %(tasks)s), '{}', 3,
                   now() - make_interval(secs => g %% 600), now() - make_interval(secs => g %% 600)
            FROM generate_series(1, 20000) AS g
            """, dict(tasks=tasks))
        conn.execute(
            """
            INSERT INTO pgsteady.jobs (queue, task, args, state, attempt, max_attempts, run_at, created_at,
                                       started_at, lease_token, lease_expires_at, worker_id, release)
            SELECT 'q' || (g %% 4), 'app.tasks.t' || (g %% %(tasks)s), '{}', 'running', 1, 3, now(), now(),
                   now(), gen_random_uuid(), now() + interval '30 seconds', 'w' || (g %% 20), 'v2'
            FROM generate_series(1, 200) AS g
            """, dict(tasks=tasks))
        conn.execute(
            """
            INSERT INTO pgsteady.workers (id, host, pid, queues, concurrency, release, started_at, heartbeat_at)
            SELECT 'w' || g, 'host' || (g % 5), 1000 + g, NULL, 10, 'v2', now() - interval '1 hour', now()
            FROM generate_series(0, 19) AS g
            """)
        conn.execute("INSERT INTO pgsteady.leader (name, worker_id) VALUES ('maintenance', 'w0')")
        conn.execute("INSERT INTO pgsteady.deploys (version, marked_at, marked_by) "
                     "VALUES ('v2', now() - interval '1 hour', 'bench')")
        planted = time.perf_counter() - t0
        conn.execute("VACUUM ANALYZE pgsteady.jobs")
        conn.execute("VACUUM ANALYZE pgsteady.events")
    return {"plant_seconds": round(planted, 1), "vacuum_seconds": round(time.perf_counter() - t0 - planted, 1)}


async def count(dsn: str, counter: CounterPass) -> tuple[int, float]:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        t0 = time.perf_counter()
        n = await counter.catch_up(conn)
        return n, time.perf_counter() - t0


def timed(fn, runs: int) -> dict[str, float]:
    fn()  # warm the caches and the plans
    seconds = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - t0)
    return {"median_ms": round(statistics.median(seconds) * 1000, 1), "max_ms": round(max(seconds) * 1000, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=10_000_000)
    p.add_argument("--days", type=int, default=10)
    p.add_argument("--tasks", type=int, default=30)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--dsn")
    p.add_argument("--keep", action="store_true", help="Keep the scratch database (its DSN is printed).")
    a = p.parse_args()
    server = with_dbname(resolve_dsn(a.dsn), "postgres")
    name = f"pgsteady_status_probe_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = with_dbname(server, name)
    try:
        migrate(dsn)
        out: dict = {"jobs": a.jobs, "days": a.days, "tasks": a.tasks, **plant(dsn, a.jobs, a.days, a.tasks)}
        q = for_schema("pgsteady")
        counted, seconds = asyncio.run(count(dsn, CounterPass(q)))
        out["backfill_24h"] = {"attempts_counted": counted, "seconds": round(seconds, 1)}
        with psycopg.connect(dsn, autocommit=True) as conn:
            out["job_stats_rows"] = conn.execute("SELECT count(*) FROM pgsteady.job_stats").fetchone()[0]
            out["history_rows"] = {
                "jobs": conn.execute("SELECT count(*) FROM pgsteady.jobs").fetchone()[0],
                "events": conn.execute("SELECT count(*) FROM pgsteady.events").fetchone()[0]}
        result = status.check(dsn)
        out["status_health"] = result.health
        out["status_check"] = timed(lambda: status.check(dsn), a.runs)
        env = {**os.environ, "PGSTEADY_DSN": dsn, "PYTHONPATH": str(ROOT)}
        out["status_cli_process"] = timed(lambda: subprocess.run(
            [sys.executable, "-m", "pgsteady", "status", "--json"], env=env, capture_output=True, check=False), 5)

        def scrape() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                metrics.render(metrics.read(conn, q))
        out["metrics_scrape"] = timed(scrape, a.runs)
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(
                """
                INSERT INTO pgsteady.jobs (queue, task, args, state, attempt, max_attempts, run_at, created_at,
                                           started_at, finished_at, release)
                SELECT 'q1', 'app.tasks.t1', '{}', 'succeeded', 1, 3, now(), now(),
                       now(), now() - make_interval(secs => g / 1000.0), 'v2'
                FROM generate_series(1, 1000) AS g
                """)
        counted, seconds = asyncio.run(count(dsn, CounterPass(q, settle=timedelta(0))))
        out["steady_counter_pass"] = {"attempts_counted": counted, "ms": round(seconds * 1000, 1)}
        print(json.dumps(out, indent=2))
    finally:
        if a.keep:
            print(f"kept: {dsn}", file=sys.stderr)
        else:
            with psycopg.connect(server, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
