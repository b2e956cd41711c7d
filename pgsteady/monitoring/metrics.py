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
    pgsteady_jobs_past_lease                         gauge, running jobs whose lease expired
    pgsteady_oldest_past_lease_seconds               gauge, how long ago the oldest of them expired
    pgsteady_workers                                 gauge, workers alive (questions.worker_alive)
    pgsteady_counters_lag_seconds                    gauge, how old the counters are
    pgsteady_status{question}                        gauge, 1 when that status question has a finding
    pgsteady_ready                                   gauge, 1 when /readyz would answer 200
    pgsteady_schema_current                          gauge, 1 when the schema is at this version
    pgsteady_database_up                             gauge, 1 when the scrape could reach the database
    pgsteady_build_info{version}                     gauge, always 1

The numbers come from one ``snapshot.read`` and the rules of
``questions`` (what "alive", "slow" and "stuck" mean), like `pgsteady status`.
A schema that is not current is ``pgsteady_database_up 1`` with
``pgsteady_schema_current 0``, not a database that is down.
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import Iterable

import psycopg
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from ..queries import Queries
from . import snapshot as snapshots
from .counts import OUTCOMES, SECONDS
from .questions import QUESTIONS, Thresholds, ask, live_workers
from .snapshot import Snapshot

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
log = logging.getLogger("pgsteady.monitoring")


def version() -> str:
    try:
        return metadata.version("pgsteady")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "unknown"


def read(conn: psycopg.Connection, q: Queries, *, worker_timeout: float = 60.0) -> Snapshot:
    """The snapshot a scrape needs: no day windows, no deploy comparison, the totals."""
    return snapshots.read(conn, q, windows=False, totals=True, rule=None)


def families(snap: Snapshot, th: Thresholds = Thresholds()) -> list[Metric]:
    up = GaugeMetricFamily("pgsteady_database_up", "1 when this scrape could reach the pgsteady database.",
                           value=1 if snap.reachable else 0)
    info = GaugeMetricFamily("pgsteady_build_info", "The pgsteady version serving these metrics.", labels=["version"])
    info.add_metric([version()], 1)
    out: list[Metric] = [up, info]
    if not snap.reachable:
        return out
    out.append(GaugeMetricFamily("pgsteady_schema_current", "1 when the schema is at this pgsteady's version.",
                                 value=1 if snap.schema_current else 0))
    findings = {q.name: q.ask(snap, th) if snap.schema_current or q.name == "schema" else [] for q in QUESTIONS}
    status = GaugeMetricFamily("pgsteady_status", "1 when this status question has a finding (see `pgsteady "
                               "status`).", labels=["question"])
    for q in QUESTIONS:
        if q.section != "deploy" and q.name not in ("tasks", "database"):  # need the day windows, or trivial
            status.add_metric([q.name], 1 if findings[q.name] else 0)
    out.append(status)
    out.append(GaugeMetricFamily("pgsteady_ready", "1 when /readyz would answer 200.",
                                 value=0 if ask(snap, th, readiness_only=True) else 1))
    if not snap.schema_current:
        return out
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
        labels = [row.queue, row.task]
        c = row.counts
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
    known = {r.queue: r for r in snap.queues}
    for name in sorted(set(known) | {r.queue for r in snap.totals}):
        r = known.get(name)
        depth.add_metric([name], r.waiting if r else 0)
        running.add_metric([name], r.running if r else 0)
        oldest.add_metric([name], round(r.oldest_age, 3) if r else 0.0)
    p = snap.past_lease
    out += [jobs, rejected, duration, wait, depth, running, oldest,
            GaugeMetricFamily("pgsteady_jobs_past_lease", "Running jobs whose lease expired and were not rescued yet.",
                              value=p.jobs),
            GaugeMetricFamily("pgsteady_oldest_past_lease_seconds",
                              "How long ago the lease of the oldest running job past its lease expired (0: none).",
                              value=round(p.oldest_seconds or 0.0, 3)),
            GaugeMetricFamily("pgsteady_workers", "Workers with a recent heartbeat.",
                              value=len(live_workers(snap, th)))]
    if snap.progress is not None:
        out.append(GaugeMetricFamily("pgsteady_counters_lag_seconds", "How far behind now the job counters are.",
                                     value=round(snap.progress.lag_seconds, 3)))
    return out


def render(snap: Snapshot, th: Thresholds = Thresholds()) -> bytes:
    """The Prometheus text exposition of a snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families(snap, th)))
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
