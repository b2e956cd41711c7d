"""`pgsteady status`: is it up, is it slow, is it failing, did the deploy change anything.

Everything here reads small tables: workers, leader, deploys, the per-minute
counters (job_stats, error_stats) and the waiting jobs through their queue
index. Nothing scans the jobs or events history, so the answer takes the
same few milliseconds with ten million jobs as with ten.

Health is the worst of the findings of ``questions.QUESTIONS`` over one
``snapshot.read``: "down" (exit 2) when the database is unreachable, the
schema is not current, or fewer workers than ``min_workers`` are alive;
"degraded" (exit 1) when a worker died recently, a queue's oldest due job
waits longer than ``max_wait``, a running job is stuck past its lease, a
task fails more than ``max_failure_rate`` of its attempts, the counters are
stale, no maintenance leader is alive, or the last deploy is worse; else
"healthy". This module only assembles: the rules live in questions.py.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import psycopg

from ..database import connect
from ..errors import DatabaseUnavailable
from ..queries import for_schema
from . import snapshot as snapshots
from .counts import Counts
from .deploys import Rule
from .questions import (DEGRADED, DOWN, Thresholds, ago, answers, leader_alive, live_workers, ordered, queue_slow,
                        queue_windows, stuck, task_failing, task_windows, worker_alive)
from .snapshot import DAY, HOUR, RECENT, Snapshot, floor_minute

HEALTHY = "healthy"
EXIT_CODES = {HEALTHY: 0, DEGRADED: 1, DOWN: 2}
__all__ = ["DEGRADED", "DOWN", "EXIT_CODES", "HEALTHY", "Status", "Thresholds", "check", "collect", "judge"]


@dataclass
class Status:
    health: str
    reasons: list[str]
    sections: dict[str, Any]
    checked_at: datetime | None = None
    seconds: float = 0.0
    snapshot: Snapshot | None = None
    answers: dict[str, list[str]] = field(default_factory=dict)  # each question asked: its findings' texts

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.health]

    def to_dict(self) -> dict[str, Any]:
        return {"health": self.health, "exit_code": self.exit_code, "reasons": self.reasons,
                "checked_at": self.checked_at, "seconds": round(self.seconds, 4), **self.sections}


def check(dsn: str, schema: str = "pgsteady", *, thresholds: Thresholds = Thresholds(), rule: Rule = Rule(),
          queue: str | None = None, read_only: bool = False) -> Status:
    """Connect and collect; an unreachable database is a "down" status, not an error.
    ``read_only``: ``dsn`` is a replica (--read-dsn), and nothing is written there."""
    started = time.perf_counter()
    try:
        conn = connect(dsn, autocommit=True, connect_timeout=5, read_only=read_only)
    except DatabaseUnavailable as exc:
        return judge(snapshots.unreachable(schema, str(exc)), thresholds, started=started)
    with conn:
        return collect(conn, schema, thresholds=thresholds, rule=rule, queue=queue, started=started)


def collect(conn: psycopg.Connection, schema: str = "pgsteady", *, thresholds: Thresholds = Thresholds(),
            rule: Rule = Rule(), queue: str | None = None, started: float | None = None,
            settled_cache: dict | None = None) -> Status:
    started = started if started is not None else time.perf_counter()
    snap = snapshots.read(conn, for_schema(schema), queue=queue, rule=rule, settled_cache=settled_cache)
    return judge(snap, thresholds, started=started)


def judge(snap: Snapshot, th: Thresholds = Thresholds(), *, started: float | None = None) -> Status:
    """The status of one snapshot: the findings of every question, and the sections to show."""
    answered = answers(snap, th)
    findings = ordered(answered)
    health = DOWN if any(f.level == DOWN for f in findings) else DEGRADED if findings else HEALTHY
    seconds = time.perf_counter() - started if started is not None else 0.0
    return Status(health, [f.text for f in findings], sections(snap, th), checked_at=snap.now, seconds=seconds,
                  snapshot=snap, answers={name: [f.text for f in found] for name, found in answered.items()})


def sections(snap: Snapshot, th: Thresholds) -> dict[str, Any]:
    """What `status --json` shows, computed from the snapshot by the same rules as the findings."""
    if not snap.reachable:
        return {"up": {"database": {"reachable": False, "error": snap.error}}}
    up: dict[str, Any] = {
        "database": {"reachable": True, "server_version": snap.server_version},
        "schema": {"name": snap.schema, "version": snap.schema_version, "expected": snap.expected_version,
                   "current": snap.schema_current},
    }
    out: dict[str, Any] = {"up": up}
    if not snap.schema_current:
        return out
    up.update(_up(snap, th))
    p = snap.progress
    out["counters"] = {"counted_until": p.counted_until if p else None,
                       "lag_seconds": round(p.lag_seconds, 1) if p else None}
    out["slow"] = _slow(snap, th)
    out["failing"] = _failing(snap, th)
    out["deploy"] = snap.deploy
    return out


def _up(snap: Snapshot, th: Thresholds) -> dict[str, Any]:
    workers = [{"id": w.id, "host": w.host, "pid": w.pid, "queues": w.queues, "concurrency": w.concurrency,
                "release": w.release, "started_at": w.started_at, "heartbeat_at": w.heartbeat_at,
                "heartbeat_age": round(w.heartbeat_age, 1), "uptime": round(w.uptime, 1),
                "alive": worker_alive(w, th)} for w in snap.workers]
    live = len(live_workers(snap, th))
    leader: dict[str, Any] = {"known": snap.leaders is not None}
    current = snap.leader()
    if current is not None:
        leader.update(worker_id=current.worker_id, elected_at=current.elected_at, renewed_at=current.renewed_at,
                      expires_at=current.expires_at,
                      alive=leader_alive(snap, th))
    return {"workers": workers, "live_workers": live, "dead_workers": len(workers) - live, "leader": leader}


def _slow(snap: Snapshot, th: Thresholds) -> dict[str, Any]:
    recent, day = queue_windows(snap)
    until = snap.until
    queues = []
    known = {q.queue: q for q in snap.queues}
    for name in sorted(set(known) | set(day)):
        d = known.get(name)
        queues.append({
            "queue": name, "paused": d.paused if d else False, "waiting": d.waiting if d else 0,
            "scheduled": d.scheduled if d else 0, "running": d.running if d else 0,
            "oldest_waiting_seconds": round(d.oldest_age, 1) if d else 0.0,
            "max_running": d.max_running if d else None, "max_per_second": d.max_per_second if d else None,
            "slow": queue_slow(d, th) if d else False,
            "last_15m": _window(recent.get(name, Counts()), until, RECENT),
            "last_24h": _window(day.get(name, Counts()), until, DAY),
        })
    p = snap.past_lease
    return {"queues": queues, "past_lease": {
        "jobs": p.jobs, "oldest_seconds": round(p.oldest_seconds, 1) if p.oldest_seconds is not None else None,
        "stuck": stuck(p, th)}}


def _failing(snap: Snapshot, th: Thresholds) -> dict[str, Any]:
    until = snap.until
    recent, hour = Counts(), Counts()
    top_error = {}
    for e in snap.errors:
        top_error.setdefault(e.task, e)
    tasks = []
    for task, (r, h) in sorted(task_windows(snap).items()):
        recent, hour = recent + r, hour + h
        if not (r.failures or h.failures or r.rescued or h.rescued or r.rejected or h.rejected):
            continue  # only tasks with something wrong are listed
        err = top_error.get(task)
        tasks.append({"task": task, "failing": task_failing(r, th), "last_15m": _window(r, until, RECENT),
                      "last_1h": _window(h, until, HOUR), "top_error": _error(err) if err else None})
    tasks.sort(key=lambda t: (not t["failing"], -t["last_15m"]["failures"], -t["last_1h"]["failures"], t["task"]))
    return {"last_15m": _window(recent, until, RECENT), "last_1h": _window(hour, until, HOUR), "tasks": tasks,
            "top_errors": [_error(e) for e in snap.errors[:10]]}


def _window(c: Counts, until: datetime, span: timedelta) -> dict[str, Any]:
    # The window runs from the start of its first minute to the counters'
    # watermark, a little longer than its name when the watermark is mid-minute.
    minutes = (until - (floor_minute(until) - span)).total_seconds() / 60
    return c.to_dict(minutes)


def _error(e: snapshots.ErrorRow) -> dict[str, Any]:
    return {"task": e.task, "message": e.message, "failures": e.failures, "queues": e.queues,
            "last_job_id": e.last_job_id, "last_minute": e.last_minute}


_ago = ago  # the CLI's short durations
