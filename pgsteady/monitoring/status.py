"""`pgsteady status`: is it up, is it slow, is it failing, did the deploy change anything.

Everything here reads small tables: workers, leader, deploys, the per-minute
counters (job_stats, error_stats) and the waiting jobs through their queue
index. Nothing scans the jobs or events history, so the answer takes the
same few milliseconds with ten million jobs as with ten.

Health is the worst of the findings: "down" (exit 2) when the database is
unreachable, the schema is not current, or fewer workers than
``min_workers`` are alive; "degraded" (exit 1) when a worker died recently,
a queue's oldest due job waits longer than ``max_wait``, a task fails more
than ``max_failure_rate`` of its attempts, the counters are stale, no
maintenance leader is alive, or the last deploy is worse; else "healthy".
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..database import connect
from ..errors import DatabaseUnavailable
from ..migrations import applied_version, latest_version
from ..queries import Queries, for_schema
from .counts import Counts
from .deploys import WORSE, Rule, compare

HEALTHY, DEGRADED, DOWN = "healthy", "degraded", "down"
EXIT_CODES = {HEALTHY: 0, DEGRADED: 1, DOWN: 2}
RECENT, HOUR, DAY = timedelta(minutes=15), timedelta(hours=1), timedelta(hours=24)


@dataclass(frozen=True)
class Thresholds:
    """What counts as degraded or down; every field is a `pgsteady status` option."""

    worker_timeout: float = 60.0        # seconds without a heartbeat before a worker counts as down
    dead_worker_window: float = 3600.0  # a worker that went down this recently makes status degraded
    min_workers: int = 1                # fewer live workers than this: down (0 turns it off)
    max_wait: float = 300.0             # oldest due job of a queue waiting longer: degraded
    max_failure_rate: float = 0.10      # a task failing more of its attempts in 15 minutes: degraded
    min_attempts: int = 20              # ... judged only with at least this many attempts
    max_counter_lag: float = 300.0      # counters older than this: degraded (is a leader running?)


@dataclass
class Status:
    health: str
    reasons: list[str]
    sections: dict[str, Any]
    checked_at: datetime | None = None
    seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.health]

    def to_dict(self) -> dict[str, Any]:
        return {"health": self.health, "exit_code": self.exit_code, "reasons": self.reasons,
                "checked_at": self.checked_at, "seconds": round(self.seconds, 4), **self.sections}


@dataclass
class _Findings:
    down: list[str] = field(default_factory=list)
    degraded: list[str] = field(default_factory=list)

    def health(self) -> str:
        return DOWN if self.down else DEGRADED if self.degraded else HEALTHY


def check(dsn: str, schema: str = "pgsteady", *, thresholds: Thresholds = Thresholds(), rule: Rule = Rule(),
          queue: str | None = None, read_only: bool = False) -> Status:
    """Connect and collect; an unreachable database is a "down" status, not an error.
    ``read_only``: ``dsn`` is a replica (--read-dsn), and nothing is written there."""
    started = time.perf_counter()
    try:
        conn = connect(dsn, autocommit=True, connect_timeout=5, read_only=read_only)
    except DatabaseUnavailable as exc:
        sections = {"up": {"database": {"reachable": False, "error": str(exc)}}}
        return Status(DOWN, [str(exc)], sections, seconds=time.perf_counter() - started)
    with conn:
        return collect(conn, schema, thresholds=thresholds, rule=rule, queue=queue, started=started)


def collect(conn: psycopg.Connection, schema: str = "pgsteady", *, thresholds: Thresholds = Thresholds(),
            rule: Rule = Rule(), queue: str | None = None, started: float | None = None) -> Status:
    started = started if started is not None else time.perf_counter()
    q = for_schema(schema)
    found = _Findings()
    with conn.cursor(row_factory=dict_row) as cur:
        clock = cur.execute(q.status_clock).fetchone()
        have, want = applied_version(conn, schema), latest_version()
        up: dict[str, Any] = {
            "database": {"reachable": True, "server_version": clock["server_version"]},
            "schema": {"name": schema, "version": have, "expected": want, "current": have == want},
        }
        sections: dict[str, Any] = {"up": up}
        if have != want:
            found.down.append(f"the {schema!r} schema is at version {have}, this pgsteady needs {want}: "
                              "run `pgsteady migrate`" if have < want else
                              f"the {schema!r} schema is at version {have}, newer than this pgsteady ({want})")
        else:
            up.update(_up(cur, q, thresholds, found, queue))
            progress = cur.execute(q.counter_progress).fetchone()
            until = progress["counted_until"] if progress else clock["now"]
            sections["counters"] = _counters(progress, thresholds, found)
            since, split_a = _floor(until) - DAY, _floor(until) - HOUR
            # Whole UTC hours between the two are read from the hourly counters.
            hours_from, hours_to = _hour_ceil(since), _hour_floor(split_a)
            sums = cur.execute(q.window_sums, dict(
                since=since, split_a=split_a, split_b=_floor(until) - RECENT, until=until, queue=queue,
                hours_from=hours_from, hours_to=max(hours_from, hours_to))).fetchall()
            errors = cur.execute(q.top_errors, dict(
                since=_floor(until) - HOUR, until=until, queue=queue, limit=100)).fetchall()
            sections["slow"] = _slow(cur, q, sums, until, thresholds, found, queue)
            sections["failing"] = _failing(sums, errors, until, thresholds, found)
            deploy = compare(conn, q, until=until, rule=rule, queue=queue)
            sections["deploy"] = deploy
            if deploy is not None and deploy["verdict"] == WORSE:
                d = deploy["deploy"]
                found.degraded.append(f"deploy {d['version']} (marked {d['marked_at']:%Y-%m-%d %H:%M}) made things "
                                      f"worse: {deploy['why']}")
    return Status(found.health(), found.down + found.degraded, sections, checked_at=clock["now"],
                  seconds=time.perf_counter() - started)


def _up(cur: psycopg.Cursor, q: Queries, th: Thresholds, found: _Findings, queue: str | None) -> dict[str, Any]:
    workers = []
    for w in cur.execute(q.status_workers).fetchall():
        if queue is not None and w["queues"] is not None and queue not in w["queues"]:
            continue
        w["alive"] = w["heartbeat_age"] <= th.worker_timeout
        w["heartbeat_age"] = round(w["heartbeat_age"], 1)
        w["uptime"] = round(w["uptime"], 1)
        workers.append(w)
    live = [w for w in workers if w["alive"]]
    for w in workers:
        if not w["alive"] and w["heartbeat_age"] <= th.dead_worker_window:
            found.degraded.append(f"worker {w['id']} is down: no heartbeat for {_ago(w['heartbeat_age'])}")
    if len(live) < th.min_workers:
        what = f"for queue {queue!r} " if queue else ""
        found.down.append(f"no live worker {what}(heartbeat within {_ago(th.worker_timeout)})" if not live else
                          f"only {len(live)} live worker(s) {what}, {th.min_workers} needed")
    try:
        leaders = cur.execute(q.status_leader).fetchall()
    except psycopg.errors.UndefinedTable:
        leaders = None  # a schema from before leader election: nobody can tell
    leader: dict[str, Any] = {"known": leaders is not None}
    current = next((r for r in leaders or [] if r["name"] == "maintenance"), None)
    if current is not None:
        alive = current["renewed_age"] <= th.worker_timeout
        leader.update(worker_id=current["worker_id"], elected_at=current["elected_at"],
                      renewed_at=current["renewed_at"], alive=alive)
    # A fleet that just started has not elected a leader yet; give it one worker timeout.
    settled = any(w["uptime"] > th.worker_timeout for w in live)
    if leaders is not None and settled and not (current and leader["alive"]):
        found.degraded.append("no live maintenance leader: rescue, cron, pruning and counters are not running")
    return {"workers": workers, "live_workers": len(live), "dead_workers": len(workers) - len(live),
            "leader": leader}


def _counters(progress: dict | None, th: Thresholds, found: _Findings) -> dict[str, Any]:
    if progress is None:
        found.degraded.append("the counters have never been updated: the maintenance leader (a running "
                              "worker) updates them every few seconds")
        return {"counted_until": None, "lag_seconds": None}
    lag = progress["lag_seconds"]
    if lag > th.max_counter_lag:
        found.degraded.append(f"the counters are {_ago(lag)} behind (threshold {_ago(th.max_counter_lag)}): "
                              "is the maintenance leader running?")
    return {"counted_until": progress["counted_until"], "lag_seconds": round(lag, 1)}


def _slow(cur: psycopg.Cursor, q: Queries, sums: list[dict], until: datetime, th: Thresholds,
          found: _Findings, queue: str | None) -> dict[str, Any]:
    recent: dict[str, Counts] = {}
    day: dict[str, Counts] = {}
    for row in sums:
        c = Counts.from_row(row)
        day[row["queue"]] = day.get(row["queue"], Counts()) + c
        if row["part"] == 2:
            recent[row["queue"]] = recent.get(row["queue"], Counts()) + c
    depths = {r["queue"]: r for r in cur.execute(q.queue_depths, dict(queue=queue)).fetchall()}
    queues = []
    for name in sorted(set(depths) | set(day)):
        d = depths.get(name, {"waiting": 0, "scheduled": 0, "running": 0, "oldest_age": 0.0, "paused": False})
        oldest = round(d["oldest_age"], 1)
        slow = d["waiting"] > 0 and oldest > th.max_wait and not d["paused"]
        if slow:
            found.degraded.append(f"queue {name!r} is slow: its oldest due job has waited {_ago(oldest)} "
                                  f"(threshold {_ago(th.max_wait)}), {d['waiting']} job(s) waiting")
        queues.append({
            "queue": name, "paused": d["paused"], "waiting": d["waiting"], "scheduled": d["scheduled"],
            "running": d["running"], "oldest_waiting_seconds": oldest, "slow": slow,
            "last_15m": _window(recent.get(name, Counts()), until, RECENT),
            "last_24h": _window(day.get(name, Counts()), until, DAY),
        })
    return {"queues": queues}


def _failing(sums: list[dict], errors: list[dict], until: datetime, th: Thresholds,
             found: _Findings) -> dict[str, Any]:
    recent, hour = Counts(), Counts()
    by_task: dict[str, tuple[Counts, Counts]] = {}
    for row in sums:
        if row["part"] < 1:
            continue
        c = Counts.from_row(row)
        r, h = by_task.get(row["task"], (Counts(), Counts()))
        by_task[row["task"]] = (r + c if row["part"] == 2 else r, h + c)
        hour += c
        if row["part"] == 2:
            recent += c
    top_error = {}
    for e in errors:
        top_error.setdefault(e["task"], e)
    tasks = []
    for task, (r, h) in sorted(by_task.items()):
        rate = r.failure_rate
        failing = r.attempts >= th.min_attempts and rate is not None and rate > th.max_failure_rate
        err = top_error.get(task)
        if failing:
            found.degraded.append(f"task {task!r} is failing: {rate:.0%} of {r.attempts} attempts in the last 15 "
                                  f"minutes (threshold {th.max_failure_rate:.0%})"
                                  + (f"; top error: {err['message']}" if err else ""))
        if not (r.failures or h.failures or r.rescued or h.rescued or r.rejected or h.rejected):
            continue  # only tasks with something wrong are listed
        tasks.append({"task": task, "failing": failing, "last_15m": _window(r, until, RECENT),
                      "last_1h": _window(h, until, HOUR), "top_error": _error(err) if err else None})
    tasks.sort(key=lambda t: (not t["failing"], -t["last_15m"]["failures"], -t["last_1h"]["failures"], t["task"]))
    return {"last_15m": _window(recent, until, RECENT), "last_1h": _window(hour, until, HOUR), "tasks": tasks,
            "top_errors": [_error(e) for e in errors[:10]]}


def _window(c: Counts, until: datetime, span: timedelta) -> dict[str, Any]:
    # The window runs from the start of its first minute to the counters'
    # watermark, a little longer than its name when the watermark is mid-minute.
    minutes = (until - (_floor(until) - span)).total_seconds() / 60
    return c.to_dict(minutes)


def _error(e: dict) -> dict[str, Any]:
    return {"task": e["task"], "message": e["message"], "failures": e["failures"], "queues": e["queues"],
            "last_job_id": e["last_job_id"], "last_minute": e["last_minute"]}


def _floor(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def _hour_floor(ts: datetime) -> datetime:
    # In UTC, as the counter pass cuts hours: a zone's offset need not be whole hours.
    return ts.astimezone(timezone.utc).replace(minute=0, second=0, microsecond=0)


def _hour_ceil(ts: datetime) -> datetime:
    floor = _hour_floor(ts)
    return floor if floor == ts else floor + timedelta(hours=1)


def _ago(seconds: float) -> str:
    seconds = max(0.0, float(seconds))
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
