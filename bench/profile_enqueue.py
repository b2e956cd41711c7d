"""Where an enqueue spends its time: the client, the round trips, the server.

    .venv/bin/python -m bench.profile_enqueue --dsn DSN [--one 2000] [--calls 50] [--chunk 1000] [--profile]

Runs N single enqueues (one commit each), then CALLS bulk calls of CHUNK
jobs, with the suite's own App (bench/peers/pgsteady_harness.py) in this
process, and prints for each: jobs/s, the client's CPU per job, the
statements per call and the server's time per statement
(``pg_stat_statements``, when the server preloads it; the database given
gets the extension), and with --profile pyinstrument's top frames
(``pip install pyinstrument`` into the venv; not a dependency). A
statement is a round trip, except COPY's data, which streams. Give a
scratch database: it is migrated and filled. The suite's own figures come
from ``python -m bench``; this is the magnifying glass for two of them.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import psycopg

from .systems import PEERS_DIR

TOP = """
SELECT calls, total_exec_time, regexp_replace(query, '\\s+', ' ', 'g')
FROM pg_stat_statements
WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND query NOT LIKE '%%pg_stat_statements%%'
ORDER BY total_exec_time DESC LIMIT 8
"""


def _statements(dsn: str) -> bool:
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
            return True
        except psycopg.Error:
            return False  # not preloaded: no server-side figures


def _report(dsn: str, label: str, jobs: int, calls: int, wall: float, cpu: float, stats: bool) -> None:
    print(f"{label}: {jobs:,} jobs in {wall:.2f} s = {jobs / wall:,.0f} jobs/s; "
          f"client CPU {cpu / jobs * 1e6:.1f} us per job, wall {wall / calls * 1e3:.2f} ms per call")
    if not stats:
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        for n, ms, query in conn.execute(TOP):
            print(f"  {n / calls:5.2f} per call  {ms / n:8.3f} ms each  {query[:100]}")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dsn", required=True, help="a scratch database (it is migrated and filled)")
    p.add_argument("--one", type=int, default=2000, help="single enqueues")
    p.add_argument("--calls", type=int, default=50, help="bulk calls")
    p.add_argument("--chunk", type=int, default=1000, help="jobs per bulk call")
    p.add_argument("--profile", action="store_true", help="pyinstrument's top frames of each part")
    a = p.parse_args()
    sys.path.insert(0, str(PEERS_DIR))
    os.environ["BENCH_DSN"] = a.dsn
    import pgsteady_harness  # the suite's App and no-op task
    from pgsteady.migrations import migrate

    migrate(a.dsn)
    app = pgsteady_harness.app
    app.pool()  # connected before the clock starts, as in the suite
    parts = [
        ("single enqueue", a.one, a.one, lambda: [app.enqueue("noop", {"i": i}) for i in range(a.one)]),
        (f"bulk enqueue, calls of {a.chunk:,}", a.calls * a.chunk, a.calls,
         lambda: [app.enqueue_many([("noop", {"i": i}) for i in range(a.chunk)]) for _ in range(a.calls)]),
    ]
    for label, jobs, calls, run in parts:
        stats = _statements(a.dsn)
        profiler = None
        if a.profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        cpu, start = time.process_time(), time.perf_counter()
        run()
        wall, cpu = time.perf_counter() - start, time.process_time() - cpu
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(unicode=False, color=False))
        _report(a.dsn, label, jobs, calls, wall, cpu, stats)
    app.close()


if __name__ == "__main__":
    main()
