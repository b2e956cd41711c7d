"""Scale scenarios: pgsteady with a big history against pgsteady on an empty one.

    scale_drain_history   drain N jobs, 1 process, with H finished jobs kept
    scale_claim_waiting   the first N jobs of W waiting ones, 1 process
    scale_enqueue_keys    bulk and one-by-one enqueue with idempotency keys, with H kept
    scale_status          `pgsteady status --json` with S jobs in history
    scale_indexes         `pgsteady indexes check --json` on T x 10 indexes

Each pass measures "loaded" and "empty" back to back, and the ratio
loaded ÷ empty is the figure the target (within 10%) is about. History rows
are written straight into pgsteady.jobs with generate_series (that is set-up,
not what is measured), spread over 30 days so that the last day's keys are
still active, then vacuumed and analysed as autovacuum would have by then.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg

from .cluster import Server
from .processes import HarnessError, Workers, environment, harness, next_id, wait_drained
from .scenarios import Counts, drain_in
from .systems import ROOT, System

HISTORY = """
INSERT INTO pgsteady.jobs (queue, task, args, key, key_active, state, attempt, max_attempts, run_at,
                           created_at, started_at, finished_at, worker_id, release)
SELECT 'default', 'noop', jsonb_build_object('i', g), 'hist:' || g, t > now() - interval '24 hours',
       'succeeded', 1, 20, t, t, t, t + interval '3 ms', 'bench-history', 'bench'
FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS g,
     LATERAL (SELECT now() - interval '30 days' * (%(total)s - g)::float / %(total)s) AS x(t)
"""
WAITING = """
INSERT INTO pgsteady.jobs (queue, task, args, max_attempts)
SELECT 'default', 'noop', jsonb_build_object('i', g), 20 FROM generate_series(1, %(n)s) AS g
"""


@dataclass
class ScaleCounts:
    history: int
    status_history: int
    waiting: int
    drain: int
    keyed_bulk: int
    keyed_one: int
    index_tables: int


def add_history(dsn: str, start: int, total: int, log) -> None:
    """History rows start..total-1 (of ``total``: older rows have lower g)."""
    chunk = 500_000
    with psycopg.connect(dsn, autocommit=True) as conn:
        for lo in range(start, total, chunk):
            hi = min(lo + chunk, total) - 1
            conn.execute(HISTORY, {"lo": lo, "hi": hi, "total": total})
            log(f"history: {hi + 1:,} of {total:,} rows")
        conn.execute("VACUUM (ANALYZE) pgsteady.jobs")


def _timed_cli(dsn: str, *args: str, ok: tuple[int, ...], times: int = 5) -> float:
    """The median wall time of ``times`` runs of the command: one run's figure
    is mostly Python start-up, whose noise (±50 ms here) would swamp the
    difference the scenario is about."""
    walls = []
    for _ in range(times):
        start = time.perf_counter()
        proc = subprocess.run([sys.executable, "-m", "pgsteady", *args], env=environment(dsn), cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        walls.append(time.perf_counter() - start)
        if proc.returncode not in ok:
            raise HarnessError(f"pgsteady {' '.join(args)} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return statistics.median(walls)


def has_command(name: str) -> bool:
    proc = subprocess.run([sys.executable, "-m", "pgsteady", name, "--help"], cwd=ROOT, capture_output=True)
    return proc.returncode == 0


def claim_loaded(server: Server, system: System, sc: ScaleCounts, concurrency: int, log_dir: Path) -> dict:
    """W jobs become waiting in one commit while the worker idles; the clock
    runs from that commit until the first N of them (claim order) are done."""
    with server.database("scale_claim") as dsn:
        harness(system, dsn, "setup")
        with Workers(system, dsn, 1, concurrency, log_dir) as workers:
            workers.wait_ready()
            lo = next_id(system, dsn)
            with psycopg.connect(dsn) as conn:
                conn.execute(WAITING, {"n": sc.waiting})
                conn.commit()
                committed = time.monotonic()
            done = wait_drained(system, dsn, lo, lo + sc.drain - 1, timeout=60 + sc.drain / 20, workers=workers)
    return {"jobs_per_s": sc.drain / (done - committed)}


def enqueue_keyed(dsn: str, system: System, sc: ScaleCounts, tag: str) -> dict:
    bulk = harness(system, dsn, "enqueue", "--mode", "bulk", "-n", str(sc.keyed_bulk), "--keys", f"{tag}-bulk")
    one = harness(system, dsn, "enqueue", "--mode", "one", "-n", str(sc.keyed_one), "--keys", f"{tag}-one")
    # They become history, so that the next pass's drain does not run them.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.jobs SET state = 'succeeded', attempt = 1, finished_at = now() "
                     "WHERE state = 'waiting'")
    return {"bulk_jobs_per_s": sc.keyed_bulk / bulk["seconds"], "one_jobs_per_s": sc.keyed_one / one["seconds"]}


def run(server: Server, system: System, sc: ScaleCounts, counts: Counts, runs: int, only: set[str] | None,
        log_dir: Path, log, baselines: list[dict | None] | None = None) -> dict:
    """Every scale scenario, ``runs`` passes each; {scenario: {"runs": {"empty": [...], "loaded": [...]}}}.
    ``baselines`` are pgsteady's drain_1 figures per pass, when that ran."""
    want = lambda name: only is None or name in only or "scale" in only  # noqa: E731
    out: dict[str, dict] = {}
    c = system.concurrency or counts.concurrency

    def entry(name: str) -> dict:
        return out.setdefault(name, {"runs": {"empty": [], "loaded": []}, "compare": [("loaded", "empty")],
                                     "errors": {}})

    def record(name: str, which: str, fn) -> None:
        sc_ = entry(name)
        try:
            sc_["runs"][which].append(fn())
        except (HarnessError, psycopg.Error, subprocess.SubprocessError) as exc:
            sc_["runs"][which].append(None)
            sc_["errors"][which] = str(exc)
            log(f"{name} {which}: FAILED {str(exc).splitlines()[0]}")
            return
        log(f"{name} {which}: {sc_['runs'][which][-1]}")

    history_needed = want("scale_drain_history") or want("scale_enqueue_keys") or want("scale_status")
    with server.database("scale_history") as hist:
        if history_needed:
            harness(system, hist, "setup")
            add_history(hist, 0, sc.history, log)
        for i in range(runs):
            drains = [name for name in ("scale_drain_history", "scale_claim_waiting") if want(name)]
            if drains:
                # One empty-history drain per pass is the baseline of both: the
                # same pass's drain_1 when it drained as many jobs, else its own.
                same = baselines[i] if baselines and i < len(baselines) and sc.drain == counts.drain else None
                if same:
                    entry(drains[0])["runs"]["empty"].append(same)
                else:
                    with server.database("scale_empty") as empty:
                        harness(system, empty, "setup")
                        record(drains[0], "empty", lambda: drain_in(empty, system, sc.drain, 1, c, log_dir))
                for name in drains[1:]:
                    entry(name)["runs"]["empty"].append(out[drains[0]]["runs"]["empty"][-1])
            if want("scale_drain_history"):
                record("scale_drain_history", "loaded", lambda: drain_in(hist, system, sc.drain, 1, c, log_dir))
            if want("scale_claim_waiting"):
                record("scale_claim_waiting", "loaded", lambda: claim_loaded(server, system, sc, c, log_dir))
            if want("scale_enqueue_keys"):
                with server.database("scale_empty") as empty:
                    harness(system, empty, "setup")
                    record("scale_enqueue_keys", "empty", lambda: enqueue_keyed(empty, system, sc, f"e{i}"))
                record("scale_enqueue_keys", "loaded", lambda: enqueue_keyed(hist, system, sc, f"l{i}"))
        if want("scale_status"):
            if not has_command("status"):
                out["scale_status"] = {"skipped": "this pgsteady has no `status` command yet"}
            else:
                add_history(hist, sc.history, sc.status_history, log)
                with server.database("scale_empty") as empty:
                    harness(system, empty, "setup")
                    for _ in range(runs):
                        record("scale_status", "empty", lambda: {"wall_s": _timed_cli(empty, "status", "--json", ok=(0, 1, 2))})
                        record("scale_status", "loaded", lambda: {"wall_s": _timed_cli(hist, "status", "--json", ok=(0, 1, 2))})
    if want("scale_indexes"):
        if not has_command("indexes"):
            out["scale_indexes"] = {"skipped": "this pgsteady has no `indexes check` command yet"}
        else:
            with server.database("scale_empty") as empty, server.database("scale_indexes") as many:
                harness(system, empty, "setup")
                build_indexes(many, sc.index_tables, log)
                for _ in range(runs):
                    # Exit 1 means findings, which the planted duplicates guarantee.
                    record("scale_indexes", "empty", lambda: {"wall_s": _timed_cli(empty, "indexes", "check", "--json", ok=(0, 1))})
                    record("scale_indexes", "loaded", lambda: {"wall_s": _timed_cli(many, "indexes", "check", "--json", ok=(0, 1))})
    return out


def build_indexes(dsn: str, tables: int, log) -> None:
    """The catalogue of bench/indexes_5000.py: per table a primary key, a
    foreign key and eight more indexes, some duplicate or redundant."""
    from .indexes_5000 import table_sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE parent (id int PRIMARY KEY)")
        conn.execute("INSERT INTO parent SELECT generate_series(1, 10)")
        for start in range(0, tables, 50):
            with conn.transaction():
                conn.execute("".join(table_sql(n) for n in range(start, min(start + 50, tables))))
        conn.execute("ANALYZE")
    log(f"indexes: {tables} tables, {tables * 10:,} indexes")
