"""The database's share of a drain: the worker's round statement in a loop,
with no task and no worker around it.

    .venv/bin/python -m bench.claim_rounds [--jobs 50000] [--batch 150] [--dsn DSN]

Enqueues N no-op jobs, then runs `complete_and_claim` back to back on one
connection in the claimer's session, each round completing what the last
one claimed (with their lease tokens) and claiming the next batch, until
nothing is left. That is the most one claimer lane can drain on this
server whatever the worker does: the figure the worker's own drain rate is
held against in docs/benchmarks.md. Uses a throwaway cluster unless --dsn.
"""

from __future__ import annotations

import argparse
import time
from datetime import timedelta

import psycopg

from .cluster import Server
from .profile_drain import fill


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--jobs", type=int, default=50_000)
    p.add_argument("--batch", type=int, default=150,
                   help="jobs claimed per round (a worker at concurrency 20 averages about 150 with no-op jobs)")
    p.add_argument("--dsn")
    a = p.parse_args()
    with Server(a.dsn) as server, server.database("rounds") as dsn:
        from pgsteady.queries import for_schema
        from pgsteady.claiming import CLAIM_SESSION_SETTINGS
        from pgsteady.topology import Link

        fill(dsn, a.jobs)
        query = for_schema("pgsteady").complete_and_claim
        params = dict(limit=a.batch, lease=timedelta(seconds=30), worker_id="rounds", release="bench", queues=None,
                      ids=[], tokens=[])
        done = rounds = 0
        with Link(dsn, settings=CLAIM_SESSION_SETTINGS).connect(autocommit=True) as conn:
            start = time.perf_counter()
            while True:
                *claimed, (*_, completed) = conn.execute(query, params).fetchall()
                rounds += 1
                done += len(completed)
                if not claimed and not params["ids"]:
                    break
                params["ids"], params["tokens"] = [r[0] for r in claimed], [r[7] for r in claimed]
            elapsed = time.perf_counter() - start
        print(f"{done:,} jobs in {rounds:,} rounds of up to {a.batch}, {elapsed:.2f}s: {done / elapsed:,.0f} jobs/s, "
              f"{elapsed / rounds * 1000:.2f} ms per round, {elapsed / done * 1e6:.1f} µs per job")


if __name__ == "__main__":
    main()
