"""Prometheus metrics, read from the database at scrape time.

The numbers are cluster-wide: any process serving them reads the same
counters (job_totals, kept by the counter pass) and the same queue depths,
so scrape one of them. Labels are queue, task and outcome only: names the
code chooses, never job ids, keys, errors or releases.

    pgsteady_jobs_total{queue,task,outcome}          counter  succeeded, retried, failed,
                                                              discarded, rescued, cancelled
    pgsteady_late_writes_rejected_total{queue,task}  counter
    pgsteady_job_duration_seconds{queue,task}        histogram, succeeded attempts
    pgsteady_job_wait_seconds{queue,task}            histogram, due -> claimed, succeeded attempts
    pgsteady_queue_depth{queue}                      gauge, due waiting jobs
    pgsteady_queue_running_jobs{queue}               gauge
    pgsteady_queue_oldest_job_age_seconds{queue}     gauge, oldest due waiting job
    pgsteady_workers                                 gauge, workers with a recent heartbeat
    pgsteady_counters_lag_seconds                    gauge, how old the counters are
    pgsteady_database_up                             gauge, 1 when the scrape could read the database
    pgsteady_build_info{version}                     gauge, always 1
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import metadata
from typing import Any, Iterable

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from psycopg.rows import dict_row

from ..queries import Queries
from .counts import OUTCOMES, SECONDS, Counts

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("pgsteady.monitoring")


def version() -> str:
    try:
        return metadata.version("pgsteady")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


@dataclass
class Snapshot:
    """What one scrape read; ``database_up`` False means only build_info is known."""

    database_up: bool = False
    totals: list[dict[str, Any]] = field(default_factory=list)
    queues: list[dict[str, Any]] = field(default_factory=list)
    live_workers: int = 0
    counters_lag: float | None = None


def read(conn: psycopg.Connection, q: Queries, *, worker_timeout: float = 60.0) -> Snapshot:
    with conn.cursor(row_factory=dict_row) as cur:
        totals = cur.execute(q.job_totals).fetchall()
        queues = cur.execute(q.queue_depths, dict(queue=None)).fetchall()
        live = cur.execute(q.live_workers, dict(stale=timedelta(seconds=worker_timeout))).fetchone()["count"]
        progress = cur.execute(q.counter_progress).fetchone()
    return Snapshot(True, totals, queues, live, progress["lag_seconds"] if progress else None)


def families(snap: Snapshot) -> list[Metric]:
    up = GaugeMetricFamily("pgsteady_database_up", "1 when this scrape could read the pgsteady database.",
                           value=1 if snap.database_up else 0)
    info = GaugeMetricFamily("pgsteady_build_info", "The pgsteady version serving these metrics.", labels=["version"])
    info.add_metric([version()], 1)
    if not snap.database_up:
        return [up, info]
    jobs = CounterMetricFamily("pgsteady_jobs", "Job attempts that ended, by outcome.",
                               labels=["queue", "task", "outcome"])
    rejected = CounterMetricFamily("pgsteady_late_writes_rejected",
                                   "Writes refused because the attempt no longer held its lease.",
                                   labels=["queue", "task"])
    duration = HistogramMetricFamily("pgsteady_job_duration_seconds", "Run time of succeeded attempts.",
                                     labels=["queue", "task"])
    wait = HistogramMetricFamily("pgsteady_job_wait_seconds",
                                 "Time succeeded attempts waited from due to claimed.", labels=["queue", "task"])
    for row in snap.totals:
        labels = [row["queue"], row["task"]]
        c = Counts.from_row(row)
        for outcome in OUTCOMES:
            jobs.add_metric([*labels, outcome], getattr(c, outcome))
        rejected.add_metric(labels, c.rejected)
        duration.add_metric(labels, _buckets(c.run, c.succeeded), c.run_sum)
        wait.add_metric(labels, _buckets(c.wait, c.succeeded), c.wait_sum)
    depth = GaugeMetricFamily("pgsteady_queue_depth", "Waiting jobs that are due.", labels=["queue"])
    running = GaugeMetricFamily("pgsteady_queue_running_jobs", "Jobs running now.", labels=["queue"])
    oldest = GaugeMetricFamily("pgsteady_queue_oldest_job_age_seconds",
                               "How long the oldest due waiting job has waited.", labels=["queue"])
    # Queues with no waiting job report 0 rather than vanish, so alerts on
    # them resolve instead of going stale.
    known = {r["queue"]: r for r in snap.queues}
    for name in sorted(set(known) | {r["queue"] for r in snap.totals}):
        r = known.get(name, {})
        depth.add_metric([name], r.get("waiting", 0))
        running.add_metric([name], r.get("running", 0))
        oldest.add_metric([name], round(r.get("oldest_age", 0.0), 3))
    workers = GaugeMetricFamily("pgsteady_workers", "Workers with a recent heartbeat.", value=snap.live_workers)
    out = [up, info, jobs, rejected, duration, wait, depth, running, oldest, workers]
    if snap.counters_lag is not None:
        out.append(GaugeMetricFamily("pgsteady_counters_lag_seconds",
                                     "How far behind now the job counters are.", value=round(snap.counters_lag, 3)))
    return out


def render(snap: Snapshot) -> bytes:
    """The Prometheus text exposition of a snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families(snap)))
    return generate_latest(registry)


class _Fixed:
    """A collector that yields metric families computed beforehand."""

    def __init__(self, metrics: Iterable[Metric]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterable[Metric]:
        return iter(self.metrics)


def _buckets(cumulative: list[int], count: int) -> list[tuple[str, float]]:
    return [*((_le(bound), n) for bound, n in zip(SECONDS, cumulative)), ("+Inf", count)]


def _le(bound: float) -> str:
    return f"{bound:g}" if bound < 1 else f"{bound:.1f}"
