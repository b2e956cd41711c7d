"""Cron schedules as people see and steer them: list, pause, resume, run now, remove.

The Python API behind `pgsteady schedules ...` and the dashboard's Schedules
page. Schedules are defined in code (``@app.periodic``) and recorded by
workers when they start (schedules.py has the cron math, the maintenance
scheduler enqueues their runs); what is decided here belongs to the
database and survives a redeploy: paused or not, runs started by hand.

Shown as people expect: a paused schedule has no next run, and a schedule
that never ran has no last run (its stored ``last_run_at`` also marks where
a new schedule starts counting, which is not a run).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import psycopg
from psycopg.rows import class_row

from .errors import ConfigError, did_you_mean
from .jobs import actor as default_actor
from .queries import Queries


@dataclass(frozen=True)
class ScheduleRow:
    name: str
    cron: str
    tz: str
    task: str
    queue: str
    on_missed: str
    paused: bool
    next_run_at: datetime | None
    last_run_at: datetime | None
    last_job_id: int | None
    last_outcome: str | None


class UnknownSchedule(ConfigError):
    """No schedule has that name."""


def list_schedules(conn: psycopg.Connection, q: Queries) -> list[ScheduleRow]:
    with conn.cursor(row_factory=class_row(ScheduleRow)) as cur:
        return cur.execute(q.schedule_rows, dict(name=None)).fetchall()


def get(conn: psycopg.Connection, q: Queries, name: str) -> ScheduleRow:
    with conn.cursor(row_factory=class_row(ScheduleRow)) as cur:
        row = cur.execute(q.schedule_rows, dict(name=name)).fetchone()
    if row is None:
        raise _unknown(conn, q, name)
    return row


def pause(conn: psycopg.Connection, q: Queries, name: str) -> None:
    """Stop enqueueing ``name``'s cron events until resumed."""
    _set_paused(conn, q, name, True)


def resume(conn: psycopg.Connection, q: Queries, name: str) -> None:
    """Enqueue ``name``'s cron events again (times missed while paused follow its on_missed)."""
    _set_paused(conn, q, name, False)


def run_now(conn: psycopg.Connection, q: Queries, name: str, *, actor: str | None = None) -> int:
    """Enqueue one run of ``name`` now, outside its schedule; returns the job id.
    The job's history records who asked."""
    row = conn.execute(q.run_schedule_now, dict(name=name, actor=actor or default_actor())).fetchone()
    if row is None:
        raise _unknown(conn, q, name)
    return row[0]


def remove(conn: psycopg.Connection, q: Queries, name: str) -> None:
    """Forget ``name``; jobs it enqueued stay. A worker whose App still defines it records it again."""
    if not conn.execute(q.delete_schedule, dict(name=name)).fetchone():
        raise _unknown(conn, q, name)


def _set_paused(conn: psycopg.Connection, q: Queries, name: str, paused: bool) -> None:
    if not conn.execute(q.set_schedule_paused, dict(name=name, paused=paused)).fetchone():
        raise _unknown(conn, q, name)


def _unknown(conn: psycopg.Connection, q: Queries, name: str) -> UnknownSchedule:
    names = [r.name for r in list_schedules(conn, q)]
    hint = did_you_mean(name, names, none="no schedules yet (a worker records them when it starts)")
    return UnknownSchedule(f"no schedule named {name!r}; {hint}")
