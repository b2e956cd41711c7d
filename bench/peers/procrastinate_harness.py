"""Procrastinate in the benchmark, configured as its documentation recommends:
an async App on the psycopg 3 connector, an async task, and the
``procrastinate worker`` command with LISTEN/NOTIFY (its default) and
``--concurrency`` for the number of jobs run at once.

Runs inside bench/.venvs/procrastinate; the worker is started by the
orchestrator as ``procrastinate --app procrastinate_harness.app worker -c C``.
"""

from __future__ import annotations

import asyncio
import os
import time

import common
import procrastinate

_dsn = os.environ.get("BENCH_DSN")
app = procrastinate.App(connector=procrastinate.PsycopgConnector(**({"conninfo": _dsn} if _dsn else {})))


@app.task(name="noop")
async def noop(i: int = 0, t: float | None = None) -> None:
    common.started(t)


async def run(a) -> None:
    async with app.open_async():
        if a.command == "setup":
            await app.schema_manager.apply_schema_async()
            common.emit(ok=True)
        elif a.command == "enqueue":
            jobs = [common.job_args(i) for i in range(a.n)]
            await app.connector.execute_query_one_async("SELECT 1")  # connected before the clock starts
            start = time.perf_counter()
            if a.mode == "one":
                for job in jobs:
                    await noop.defer_async(**job)
            else:
                for part in common.chunks(jobs, a.chunk):
                    await noop.batch_defer_async(*part)
            common.emit(seconds=time.perf_counter() - start, n=a.n)
        elif a.command == "latency":
            await common.latency_probes_async(a.n, a.gap, lambda args: noop.defer_async(**args))
        else:
            raise SystemExit("Procrastinate runs its own worker command")


if __name__ == "__main__":
    asyncio.run(run(common.parse()))
