"""What the dashboard reads beyond the domain modules: the job list with its
filters, the running jobs per worker, the per-minute series of the
charts, index builds in progress. The SQL lives with its tables (the
dashboard_* queries of sql/jobs.sql and sql/workers.sql), with the plan
reasoning where it reads pgsteady.jobs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg
from psycopg.rows import class_row, dict_row

from ..indexes import probes
from ..indexes.probes import IndexBuild
from ..jobs import STATES
from ..monitoring.counts import Counts
from ..queries import Queries

PAGE = 50
SCAN = 20_000  # jobs looked at per page of a filtered list
DAY_STEP = timedelta(minutes=5)  # the day chart's points
MAX_TEXT = 200
WINDOWS = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "24h": timedelta(hours=24),
           "7d": timedelta(days=7), "all": None}


class BadFilter(ValueError):
    """A filter value that cannot be used; the message says which and why."""


@dataclass(frozen=True)
class JobFilter:
    state: str | None = None
    queue: str | None = None
    task: str | None = None
    key: str | None = None
    window: str = "all"
    text: str | None = None
    before: int | None = None

    @classmethod
    def parse(cls, params: dict[str, str]) -> JobFilter:
        """From query parameters; unknown values are a BadFilter, empty ones mean "any"."""
        def text(name: str, limit: int = MAX_TEXT) -> str | None:
            value = (params.get(name) or "").strip()
            if "\x00" in value:
                raise BadFilter(f"{name} contains a NUL character")
            if len(value) > limit:
                raise BadFilter(f"{name} is longer than {limit} characters")
            return value or None

        state = text("state")
        if state is not None and state not in STATES:
            raise BadFilter(f"state must be one of {', '.join(STATES)}; got {state!r}")
        window = text("window") or "all"
        if window not in WINDOWS:
            raise BadFilter(f"window must be one of {', '.join(WINDOWS)}; got {window!r}")
        before = text("before", 20)
        if before is not None and not (before.isdigit() and 0 < int(before) < 2**63):
            raise BadFilter(f"before must be a job id (a positive whole number); got {before!r}")
        return cls(state=state, queue=text("queue"), task=text("task"), key=text("key"), window=window,
                   text=text("q"), before=int(before) if before else None)

    def query(self, **changes: object) -> dict[str, str]:
        """As query parameters (for links to the next page or to a bulk action)."""
        values = {"state": self.state, "queue": self.queue, "task": self.task, "key": self.key,
                  "window": None if self.window == "all" else self.window, "q": self.text, "before": self.before}
        values.update(changes)
        return {k: str(v) for k, v in values.items() if v is not None}

    @property
    def active(self) -> bool:
        return any(self.query(before=None).values())


@dataclass(frozen=True)
class JobRow:
    id: int
    queue: str
    task: str
    state: str
    attempt: int
    max_attempts: int
    key: str | None
    run_at: datetime
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    worker_id: str | None
    last_error: str | None


@dataclass
class JobPage:
    rows: list[JobRow]
    next_before: int | None   # the keyset of the next page; None: nothing older can match
    scanned_to: int | None = None  # set when a scan ended without filling the page: search below this id
    scanned: int = 0


def jobs(conn: psycopg.Connection, q: Queries, f: JobFilter, *, limit: int = PAGE, scan: int = SCAN,
         now: datetime | None = None) -> JobPage:
    """One page of jobs matching ``f``, by the query whose index fits the
    filter (see sql/jobs.sql): a key's jobs and waiting or running jobs
    come from their indexes; failed or cancelled jobs and the rest of the
    history are looked at ``scan`` jobs at a time, so a page never costs more."""
    span = WINDOWS[f.window]
    since = (now or datetime.now(timezone.utc)) - span if span else None
    params = dict(before=f.before, state=f.state, queue=f.queue, task=f.task, key=f.key, since=since,
                  text=f.text, limit=limit + 1, scan=scan)
    if f.key is not None:
        query, scanned = q.dashboard_key_jobs, None
    elif f.state in ("waiting", "running"):
        query, scanned = q.dashboard_active_jobs, None
    elif f.state in ("failed", "cancelled"):
        query, scanned = q.dashboard_ended_badly_jobs, q.dashboard_ended_badly_jobs_scanned
    else:
        query, scanned = q.dashboard_jobs, q.dashboard_jobs_scanned
    custom = query is q.dashboard_ended_badly_jobs  # its plan needs the state's value (see its comment)
    with conn.cursor(row_factory=class_row(JobRow)) as cur:
        rows = cur.execute(query, params, prepare=False if custom else None).fetchall()
    if len(rows) > limit:
        return JobPage(rows[:limit], rows[limit - 1].id)
    if scanned is None or not f.active:
        return JobPage(rows, None)
    last_id, seen, last_created = conn.execute(scanned, dict(before=f.before, state=f.state, scan=scan),
                                               prepare=False if custom else None).fetchone()
    if seen < scan or (since is not None and last_created is not None and last_created < since):
        return JobPage(rows, None, scanned=seen)  # the scan reached the oldest job, or left the window
    return JobPage(rows, None, scanned_to=last_id, scanned=seen)


def running_by_worker(conn: psycopg.Connection, q: Queries) -> dict[str, int]:
    """How many jobs each worker runs now. The workers themselves are the
    monitoring snapshot's (snapshot.WorkerRow): one owner for that row."""
    return dict(conn.execute(q.dashboard_running_by_worker).fetchall())


@dataclass
class Series:
    """Points of one window, oldest first, ``step`` apart, with the deploy marks in it."""

    since: datetime
    until: datetime
    step: timedelta = timedelta(minutes=1)
    minutes: list[datetime] = field(default_factory=list)
    counts: list[Counts] = field(default_factory=list)
    deploys: list[tuple[datetime, str]] = field(default_factory=list)


def series(conn: psycopg.Connection, q: Queries, *, until: datetime, span: timedelta,
           step: timedelta = timedelta(minutes=1)) -> Series:
    """The counters of [until - span, until) per ``step`` (whole minutes):
    per minute from job_stats_all, longer steps summed by the server."""
    until = until.replace(second=0, microsecond=0)
    since = until - span
    out = Series(since, until, step)
    query, params = (q.minute_series, dict(since=since, until=until)) if step == timedelta(minutes=1) else \
        (q.step_series, dict(since=since, until=until, step=step))
    with conn.cursor(row_factory=dict_row) as cur:
        by_point = {r["minute"]: Counts.from_row(r) for r in cur.execute(query, params).fetchall()}
        out.deploys = [(r["marked_at"], r["version"]) for r in cur.execute(
            q.dashboard_deploys_between, dict(since=since, until=until)).fetchall()]
    point = since
    while point < until:
        out.minutes.append(point)
        out.counts.append(by_point.get(point, Counts()))
        point += step
    return out


def index_builds(conn: psycopg.Connection) -> list[IndexBuild]:
    # The one reader of builds in progress, as the health checks and `change apply --wait` read them.
    return probes.index_builds(conn)


def changes(conn: psycopg.Connection, q: Queries, *, limit: int = 100) -> list[dict]:
    # The change pillar's own list query (changes.sql), as `pgsteady change list` reads it.
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q.list_changes, dict(limit=limit)).fetchall()
