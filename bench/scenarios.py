"""The side-by-side scenarios, each measured the same way for every system.

    enqueue_one   jobs/s   N jobs, one enqueue call (and commit) each, no worker running
    enqueue_bulk  jobs/s   N jobs in bulk calls of --bulk-chunk jobs (1,000; each call its own
                           transaction), no worker running
    memory        MB       RSS of one pgsteady worker at concurrency 100 while it drains N jobs:
                           the most, and the growth from the first tenth to the end
    drain_1       jobs/s   N waiting no-op jobs run to the end by 1 worker process
    drain_2       jobs/s   the same with 2 worker processes
    latency       ms       enqueue-to-start of a probe job with an idle worker: p50, p95, p99

Drain: the workers start first and prove themselves ready with a warm-up
job; then the N jobs are committed in one transaction, which makes them
visible all at once, and the clock runs from that commit until no job is
waiting or running. Process start-up, imports and connecting are outside the
measurement for every system alike.

Latency: each probe carries the wall-clock time taken just before its
enqueue call; the task's first line writes the difference to a file. So the
figure includes the enqueue's own commit, the notification, the claim and the
hand-over to the task function: what a caller waits for.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .cluster import Server
from .processes import HarnessError, Workers, harness, harness_answer_time, next_id, wait_drained
from .systems import System


@dataclass
class Counts:
    enqueue_one: int
    enqueue_bulk: int
    drain: int
    latency_probes: int
    latency_gap: float
    concurrency: int
    bulk_chunk: int = 1_000
    memory_jobs: int = 0


def enqueue(server: Server, system: System, counts: Counts, mode: str) -> dict:
    n = counts.enqueue_one if mode == "one" else counts.enqueue_bulk
    with server.database(f"enq{mode}_{system.name}") as dsn:
        harness(system, dsn, "setup")
        answer = harness(system, dsn, "enqueue", "--mode", mode, "-n", str(n), "--chunk",
                         str(counts.bulk_chunk if mode == "bulk" else 0))
    return {"jobs_per_s": n / answer["seconds"]}


def drain(server: Server, system: System, counts: Counts, processes: int, log_dir: Path) -> dict:
    n = min(counts.drain, system.max_drain or counts.drain)
    with server.database(f"drain{processes}_{system.name}") as dsn:
        harness(system, dsn, "setup")
        return drain_in(dsn, system, n, processes, system.concurrency or counts.concurrency, log_dir)


def drain_in(dsn: str, system: System, n: int, processes: int, concurrency: int, log_dir: Path) -> dict:
    """Drain n jobs in an existing database (the scale scenarios' too)."""
    with Workers(system, dsn, processes, concurrency, log_dir) as workers:
        workers.wait_ready()
        lo = next_id(system, dsn)
        _, committed = harness_answer_time(system, dsn, "enqueue", "--mode", "bulk", "-n", str(n))
        done = wait_drained(system, dsn, lo, None, timeout=60 + n / 20, workers=workers)
    verify_succeeded(system, dsn, lo, n)
    return {"jobs_per_s": n / (done - committed)}


def verify_succeeded(system: System, dsn: str, lo: int, n: int) -> None:
    """Every job really ran to success (where the system keeps a record)."""
    if system.succeeded_sql is None:
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        got = conn.execute(system.succeeded_sql, {"lo": lo}).fetchone()[0]
    if got != n:
        raise HarnessError(f"{system.name}: {got} of {n} jobs succeeded")


def latency(server: Server, system: System, counts: Counts, log_dir: Path) -> dict:
    n = counts.latency_probes
    with server.database(f"lat_{system.name}") as dsn, tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "latency.txt"
        out.touch()
        out.chmod(0o666)
        harness(system, dsn, "setup")
        with Workers(system, dsn, 1, system.concurrency or counts.concurrency, log_dir,
                     BENCH_LATENCY_FILE=str(out)) as workers:
            workers.wait_ready()
            out.write_text("")  # the warm-up job's figure is not a probe
            harness(system, dsn, "latency", "-n", str(n), "--gap", str(counts.latency_gap))
            deadline = time.monotonic() + 30
            while len(lines := out.read_text().split()) < n:
                if time.monotonic() > deadline:
                    raise HarnessError(f"{system.name}: {len(lines)} of {n} latency probes ran:\n{workers.output()}")
                time.sleep(0.05)
    delays = sorted(float(x) * 1000 for x in lines[:n])
    return {"p50_ms": percentile(delays, 50), "p95_ms": percentile(delays, 95), "p99_ms": percentile(delays, 99)}


def percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1]


def memory(server: Server, system: System, counts: Counts, log_dir: Path, concurrency: int = 100) -> dict:
    """RSS of one worker process draining ``counts.memory_jobs`` jobs, read from
    /proc every half second: the largest sample, and how much the worker grew
    from the end of the first tenth of the drain to the end (flat is ~1.0)."""
    n = counts.memory_jobs
    with server.database(f"mem_{system.name}") as dsn:
        harness(system, dsn, "setup")
        with Workers(system, dsn, 1, concurrency, log_dir) as workers:
            workers.wait_ready()
            pid = workers.procs[0].pid
            lo = next_id(system, dsn)
            samples: list[tuple[float, float]] = []
            done = threading.Event()

            def sample() -> None:
                while not done.wait(0.5):
                    with contextlib.suppress(OSError, ValueError):
                        samples.append((time.monotonic(), rss_mb(pid)))

            sampler = threading.Thread(target=sample, daemon=True)
            start_rss = rss_mb(pid)
            for part in range(0, n, 100_000):  # enqueued while it drains, as a busy day would
                harness(system, dsn, "enqueue", "--mode", "bulk", "-n", str(min(100_000, n - part)))
                if part == 0:
                    started = time.monotonic()
                    samples.append((started, rss_mb(pid)))
                    sampler.start()
            finished = wait_drained(system, dsn, lo, None, timeout=120 + n / 5_000, workers=workers)
            done.set()
            sampler.join()
            samples.append((finished, rss_mb(pid)))
    tenth = started + (finished - started) / 10
    early = [mb for t, mb in samples if t <= tenth] or [samples[0][1]]
    return {"max_rss_mb": max(mb for _, mb in samples), "start_rss_mb": start_rss,
            "growth_after_first_tenth": samples[-1][1] / max(early[-1], 1e-9), "jobs_per_s": n / (finished - started)}


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise ValueError("no VmRSS")
