"""What every harness shares: the command line, the no-op job's body, output.

The harnesses run inside each system's own virtual environment, so this
module uses the standard library only. The orchestrator (``python -m bench``)
talks to a harness through its command line and one JSON line on stdout:

    <harness>.py setup                      install the system's schema
    <harness>.py enqueue --mode one|bulk -n N [--keys PREFIX] [--chunk C]
    <harness>.py latency -n N --gap SECONDS
    <harness>.py worker --concurrency C [--batch B] [--style select|update]
                                            (plain SQL only; the others run
                                            their own worker CLI)

Every harness reads the database from BENCH_DSN (a libpq URL); the PG*
variables are set as well for drivers that prefer them.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("command", choices=["setup", "enqueue", "latency", "worker"])
    p.add_argument("--mode", choices=["one", "bulk"], default="bulk")
    p.add_argument("-n", type=int, default=1000)
    p.add_argument("--keys", help="give every job an idempotency key with this prefix")
    p.add_argument("--gap", type=float, default=0.03, help="seconds between latency probes")
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--batch", type=int, default=20)
    p.add_argument("--chunk", type=int, default=0,
                   help="bulk enqueue in calls of this many jobs (0: one call for all)")
    p.add_argument("--style", choices=["select", "update"], default="select",
                   help="plain SQL only: how a batch is claimed (see plainsql_harness.py)")
    return p.parse_args(argv)


def chunks(items: list, size: int) -> list[list]:
    """The calls of a bulk enqueue: one for everything, or calls of ``size``."""
    if size <= 0:
        return [items]
    return [items[i:i + size] for i in range(0, len(items), size)]


def dsn() -> str:
    return os.environ["BENCH_DSN"]


def emit(**values) -> None:
    """The harness's answer: one JSON line, flushed at once, because the
    orchestrator takes the moment it reads the line as "the enqueue committed"."""
    sys.stdout.write(json.dumps(values) + "\n")
    sys.stdout.flush()


_latency_file = os.environ.get("BENCH_LATENCY_FILE")


def started(t: float | None) -> None:
    """Called first thing in every no-op job: a latency probe carries the
    wall-clock time taken just before its enqueue call, and the gap to now
    is what the user waits between enqueue and start. time.time() is the
    same clock in every process on this machine."""
    if t is not None and _latency_file:
        delay = time.time() - t
        with open(_latency_file, "a") as f:
            f.write(f"{delay:.6f}\n")


def job_args(i: int) -> dict:
    return {"i": i}


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def latency_probes(n: int, gap: float, enqueue_one) -> None:
    """Enqueue n probes one at a time with a pause between them, so that the
    worker is idle when each one arrives (the scenario is "idle worker")."""
    for _ in range(n):
        enqueue_one({"t": time.time()})
        time.sleep(gap)
    emit(probes=n)


async def latency_probes_async(n: int, gap: float, enqueue_one) -> None:
    import asyncio

    for _ in range(n):
        await enqueue_one({"t": time.time()})
        await asyncio.sleep(gap)
    emit(probes=n)
