"""Where a pgsteady worker spends its time draining no-op jobs.

    .venv/bin/python -m bench.profile_drain [--jobs 20000] [--concurrency 20] [--dsn DSN] [--html out.html]
                                            [--no-profiler]

Enqueues N async no-op jobs, then drains them with one in-process Worker
(until idle) under pyinstrument, and prints the profile plus what the
database did per job (commits, rows written, rows read). Uses a throwaway
cluster unless --dsn is given. The numbers of the suite itself come from
``python -m bench``; this is the magnifying glass for one of them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import sys
import time

import psycopg

from .cluster import Server
from .systems import PEERS_DIR

STATS = """
SELECT d.xact_commit, d.tup_inserted + d.tup_updated + d.tup_deleted, d.tup_returned + d.tup_fetched,
       d.blks_hit + d.blks_read
FROM pg_stat_database d WHERE d.datname = current_database()
"""


def db_stats(dsn: str) -> tuple:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_force_next_flush()")
        return conn.execute(STATS).fetchone()


def fill(dsn: str, jobs: int):
    """Migrate ``dsn`` and enqueue ``jobs`` no-op jobs with the suite's own
    App (bench/peers/pgsteady_harness.py); returns that App."""
    sys.path.insert(0, str(PEERS_DIR))
    os.environ["BENCH_DSN"] = dsn
    import pgsteady_harness  # the suite's App and no-op task
    from pgsteady.migrations import migrate

    migrate(dsn)
    app = pgsteady_harness.app
    app.enqueue_many([("noop", {"i": i}) for i in range(jobs)])
    app.close()
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=20_000)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--dsn")
    p.add_argument("--html", help="also write pyinstrument's HTML report here")
    p.add_argument("--sync", action="store_true", help="a plain def task (thread pool) instead of async")
    p.add_argument("--no-profiler", action="store_true",
                   help="no pyinstrument: the drain's own rate and the worker's CPU seconds per job (getrusage)")
    p.add_argument("--analyze", action="store_true",
                   help="ANALYZE pgsteady.jobs after enqueueing (as autovacuum would, later), to see the claim "
                        "with fresh planner statistics")
    a = p.parse_args()
    os.environ["BENCH_TASK_STYLE"] = "sync" if a.sync else "async"
    with Server(a.dsn) as server, server.database("profile") as dsn:
        from pgsteady import Worker

        app = fill(dsn, a.jobs)
        if a.analyze:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("ANALYZE pgsteady.jobs")
        before = db_stats(dsn)
        profiler = None
        if not a.no_profiler:
            from pyinstrument import Profiler

            profiler = Profiler(async_mode="enabled", interval=0.001)
        worker = Worker(app, concurrency=a.concurrency)
        cpu = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        if profiler:
            profiler.start()
        stats = asyncio.run(worker.run(until_idle=True))
        if profiler:
            profiler.stop()
        elapsed = time.perf_counter() - started
        end = resource.getrusage(resource.RUSAGE_SELF)
        after = db_stats(dsn)
        n = stats.succeeded
        if profiler:
            print(profiler.output_text(unicode=True, color=False, show_all=False))
            if a.html:
                with open(a.html, "w") as f:
                    f.write(profiler.output_html())
        used = end.ru_utime - cpu.ru_utime + end.ru_stime - cpu.ru_stime
        print(f"{n} jobs in {elapsed:.2f}s{' under the profiler' if profiler else ''}: {n / elapsed:,.0f} jobs/s, "
              f"worker CPU {used / n * 1e6:.1f} µs per job (load average {os.getloadavg()[0]:.1f}) "
              f"(concurrency {a.concurrency}, {'sync' if a.sync else 'async'} task"
              f"{', analysed before the drain' if a.analyze else ''})")
        print(f"per job: {(after[0] - before[0]) / n:.3f} commits, {(after[1] - before[1]) / n:.2f} rows written, "
              f"{(after[2] - before[2]) / n:.1f} rows read, {(after[3] - before[3]) / n:.1f} buffers touched")


if __name__ == "__main__":
    main()
