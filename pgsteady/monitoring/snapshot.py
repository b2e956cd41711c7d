"""One read of everything monitoring asks about, as typed rows.

`pgsteady status`, `/readyz`, `/metrics` and the dashboard all start from a
:class:`Snapshot` read here once per call, and then ask the questions of
``questions.QUESTIONS`` of it; none of them reads the database another way.
Every read is of a small table (workers, leader, counters, deploys) or goes
through a partial index (waiting and running jobs, expired leases), so a
snapshot costs the same few milliseconds with ten million jobs as with ten.

An unreachable database or a schema that is not current is a snapshot too
(``reachable`` False, or ``schema_version != expected_version``) with the
rest left empty: the questions turn that into "down", the metrics into
``pgsteady_database_up 0`` or ``pgsteady_schema_current 0``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg.rows import class_row, dict_row

from ..migrations import applied_version, latest_version
from ..queries import Queries
from ..queues import QueueRow, list_queues
from .counts import Counts
from .deploys import Rule, compare

RECENT, HOUR, DAY = timedelta(minutes=15), timedelta(hours=1), timedelta(hours=24)


@dataclass(frozen=True)
class WorkerRow:
    id: str
    host: str
    pid: int
    queues: list[str] | None
    concurrency: int
    release: str | None
    started_at: datetime
    heartbeat_at: datetime
    heartbeat_age: float
    uptime: float


@dataclass(frozen=True)
class LeaderRow:
    name: str
    worker_id: str
    elected_at: datetime
    renewed_at: datetime
    expires_at: datetime
    renewed_age: float
    expires_in: float  # seconds until the lease ends; negative once it has


@dataclass(frozen=True)
class Progress:
    counted_until: datetime
    passed_at: datetime
    lag_seconds: float


@dataclass(frozen=True)
class PastLease:
    jobs: int
    oldest_seconds: float | None


@dataclass(frozen=True)
class ErrorRow:
    task: str
    message: str
    failures: int
    last_job_id: int | None
    last_minute: datetime
    queues: list[str]


@dataclass(frozen=True)
class WindowRow:
    """The counters of one queue and task in one part of the status windows:
    0 = the day before the last hour, 1 = the last hour before the last 15
    minutes, 2 = the last 15 minutes."""

    queue: str
    task: str
    part: int
    counts: Counts


@dataclass(frozen=True)
class TotalRow:
    queue: str
    task: str
    counts: Counts


@dataclass
class Snapshot:
    schema: str
    reachable: bool = True
    error: str | None = None
    now: datetime | None = None
    server_version: str | None = None
    schema_version: int = 0
    expected_version: int = 0
    workers: list[WorkerRow] = field(default_factory=list)
    leaders: list[LeaderRow] | None = None  # None: a schema from before leader election
    queues: list[QueueRow] = field(default_factory=list)
    past_lease: PastLease = PastLease(0, None)
    progress: Progress | None = None
    windows: list[WindowRow] = field(default_factory=list)
    errors: list[ErrorRow] = field(default_factory=list)
    totals: list[TotalRow] = field(default_factory=list)
    deploy: dict[str, Any] | None = None
    queue: str | None = None  # the one queue asked about, None for all

    @property
    def schema_current(self) -> bool:
        return self.reachable and self.schema_version == self.expected_version

    @property
    def until(self) -> datetime | None:
        """The counters' watermark: windows end here, not at now."""
        return self.progress.counted_until if self.progress else self.now

    def leader(self, name: str = "maintenance") -> LeaderRow | None:
        return next((r for r in self.leaders or [] if r.name == name), None)


def unreachable(schema: str, error: str) -> Snapshot:
    return Snapshot(schema, reachable=False, error=error)


def read(conn: psycopg.Connection, q: Queries, *, queue: str | None = None, windows: bool = True,
         totals: bool = False, rule: Rule | None = Rule(), settled_cache: dict | None = None) -> Snapshot:
    """Read one snapshot. ``windows``: the day of counters and top errors
    (status, dashboard); ``totals``: the counters since the beginning
    (metrics); ``rule``: compare the last deploy (None: skip), answered from
    ``settled_cache`` when it holds that comparison (deploys.compare)."""
    snap = Snapshot(q.schema, queue=queue)
    clock = conn.execute(q.status_clock).fetchone()
    snap.now, snap.server_version = clock[0], clock[1]
    snap.schema_version, snap.expected_version = applied_version(conn, q.schema), latest_version()
    if not snap.schema_current:
        return snap
    with conn.cursor(row_factory=class_row(WorkerRow)) as cur:
        workers = cur.execute(q.status_workers).fetchall()
    snap.workers = [w for w in workers if queue is None or w.queues is None or queue in w.queues]
    try:
        with conn.cursor(row_factory=class_row(LeaderRow)) as cur:
            snap.leaders = cur.execute(q.status_leader).fetchall()
    except psycopg.errors.UndefinedTable:
        snap.leaders = None
    snap.queues = list_queues(conn, q, queue=queue)
    with conn.cursor(row_factory=class_row(PastLease)) as cur:
        snap.past_lease = cur.execute(q.past_lease, dict(queue=queue)).fetchone()
    with conn.cursor(row_factory=class_row(Progress)) as cur:
        snap.progress = cur.execute(q.counter_progress).fetchone()
    if totals:
        with conn.cursor(row_factory=dict_row) as cur:
            snap.totals = [TotalRow(r["queue"], r["task"], Counts.from_row(r))
                           for r in cur.execute(q.job_totals).fetchall()]
    if windows:
        _read_windows(conn, q, snap)
    if rule is not None:
        snap.deploy = compare(conn, q, until=snap.until, rule=rule, queue=queue, settled_cache=settled_cache)
    return snap


def _read_windows(conn: psycopg.Connection, q: Queries, snap: Snapshot) -> None:
    until = snap.until
    since, split_a = floor_minute(until) - DAY, floor_minute(until) - HOUR
    # Whole UTC hours between the two are read from the hourly counters.
    hours_from, hours_to = _hour_ceil(since), _hour_floor(split_a)
    with conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q.window_sums, dict(
            since=since, split_a=split_a, split_b=floor_minute(until) - RECENT, until=until, queue=snap.queue,
            hours_from=hours_from, hours_to=max(hours_from, hours_to))).fetchall()
        snap.windows = [WindowRow(r["queue"], r["task"], r["part"], Counts.from_row(r)) for r in rows]
    with conn.cursor(row_factory=class_row(ErrorRow)) as cur:
        snap.errors = cur.execute(q.top_errors, dict(
            since=floor_minute(until) - HOUR, until=until, queue=snap.queue, limit=100)).fetchall()


def floor_minute(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def _hour_floor(ts: datetime) -> datetime:
    # In UTC, as the counter pass cuts hours: a zone's offset need not be whole hours.
    return ts.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(ts: datetime) -> datetime:
    floor = _hour_floor(ts)
    return floor if floor == ts else floor + timedelta(hours=1)
