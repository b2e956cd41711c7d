"""PgQueuer in the benchmark, configured as its documentation recommends: the
asyncpg driver, an async entrypoint, ``pgq install`` for the schema and
its worker (see ``worker`` below) with the batch size at its default (10)
and, as a second configuration, at its fastest setting.

Runs inside bench/.venvs/pgqueuer.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from typing import AsyncIterator

import asyncpg
import common
from pgqueuer import PgQueuer
from pgqueuer.db import AsyncpgDriver
from pgqueuer.models import Job
from pgqueuer.queries import Queries


@asynccontextmanager
async def main() -> AsyncIterator[PgQueuer]:
    """The factory the worker calls (1.6.0 wants an async context manager)."""
    connection = await asyncpg.connect()  # the PG* variables, as its docs do
    pgq = PgQueuer(AsyncpgDriver(connection))

    @pgq.entrypoint("noop")
    async def noop(job: Job) -> None:
        args = json.loads(job.payload) if job.payload else {}
        common.started(args.get("t"))

    yield pgq
    await connection.close()


def payload(args: dict) -> bytes:
    return json.dumps(args).encode()


async def run(a) -> None:
    if a.command == "setup":
        subprocess.run([sys.executable, "-m", "pgqueuer", "install"], check=True, capture_output=True)
        common.emit(ok=True)
        return
    connection = await asyncpg.connect()  # the PG* variables, as its docs do
    queries = Queries(AsyncpgDriver(connection))
    if a.command == "enqueue":
        payloads = [payload(common.job_args(i)) for i in range(a.n)]
        start = time.perf_counter()
        if a.mode == "one":
            for p in payloads:
                await queries.enqueue("noop", p)
        else:
            for part in common.chunks(payloads, a.chunk):
                await queries.enqueue(["noop"] * len(part), part, [0] * len(part))
        common.emit(seconds=time.perf_counter() - start, n=a.n)
    elif a.command == "latency":
        await common.latency_probes_async(a.n, a.gap, lambda args: queries.enqueue("noop", payload(args)))
    await connection.close()


def worker(batch_size: int) -> None:
    """The worker, as `pgq run pgqueuer_harness:main --batch-size B` runs it:
    pgqueuer.run is the same supervisor without the command line, on uvloop
    as the command line does. (`pgq run` itself fails at start in pgqueuer
    1.6.0 with typer 0.29: its log set-up gets a str where it wants an enum.)"""
    import logging

    import pgqueuer
    import uvloop

    logging.basicConfig(level=logging.WARNING)
    uvloop.run(pgqueuer.run("pgqueuer_harness:main", batch_size=batch_size))


if __name__ == "__main__":
    args = common.parse()
    if args.command == "worker":
        worker(args.batch)
    else:
        asyncio.run(run(args))
