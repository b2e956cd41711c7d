"""Queues: how deep they are, and the controls every worker obeys.

The Python API behind `pgsteady queues ...` and the dashboard's Queues page:

    from pgsteady import queues
    queues.pause(conn, q, "mail", actor="ops:alice")
    queues.set_limits(conn, q, "mail", max_running=5)
    [row.queue for row in queues.list_queues(conn, q)]

A pause or a limit is a row in ``queues``, stored at once and obeyed by every
worker from its next claim (a notification wakes them). Every change is
recorded in the queue's history (an event without a job) with who made it.
Depth is read here once (``list_queues``, the ``queue_depths`` query), and
monitoring's snapshot reads it through this function, so status and
`queues list` never disagree.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import class_row

from . import notifications
from .errors import ConfigError
from .jobs import actor as default_actor
from .payloads import INT_MAX, check_int, check_queue
from .queries import Queries


@dataclass(frozen=True)
class QueueRow:
    """A queue's depth and controls: what status, /readyz, metrics, `queues list` and the dashboard show."""

    queue: str
    waiting: int
    scheduled: int
    running: int
    oldest_age: float
    paused: bool
    max_running: int | None
    max_per_second: int | None


@dataclass(frozen=True)
class QueueEvent:
    created_at: datetime
    kind: str
    actor: str | None
    message: str | None
    data: dict[str, Any] | None


def validate_limits(max_running: Any, max_per_second: Any) -> None:
    """Queue limits are whole numbers from 1 (None: no limit), by payloads.check_int."""
    for label, value in (("max_running", max_running), ("max_per_second", max_per_second)):
        if value is not None:
            check_int(value, label, 1, INT_MAX, exc=ConfigError)


def validate_name(queue: Any) -> str:
    return check_queue(queue, exc=ConfigError)


def list_queues(conn: psycopg.Connection, q: Queries, *, queue: str | None = None) -> list[QueueRow]:
    """Every queue with jobs waiting or running, or with controls set."""
    with conn.cursor(row_factory=class_row(QueueRow)) as cur:
        return cur.execute(q.queue_depths, dict(queue=queue)).fetchall()


def pause(conn: psycopg.Connection, q: Queries, queue: str, *, actor: str | None = None) -> None:
    """No worker starts ``queue``'s jobs until resumed; running ones finish."""
    _set_paused(conn, q, queue, True, actor)


def resume(conn: psycopg.Connection, q: Queries, queue: str, *, actor: str | None = None) -> None:
    _set_paused(conn, q, queue, False, actor)


def set_limits(conn: psycopg.Connection, q: Queries, queue: str, *, max_running: int | None = None,
               max_per_second: int | None = None, actor: str | None = None) -> None:
    """At most ``max_running`` of the queue's jobs at once and ``max_per_second``
    started per second, fleet-wide (None: no limit). Enforced in the claim."""
    validate_name(queue)
    validate_limits(max_running, max_per_second)
    with conn.transaction():
        conn.execute(q.set_queue_limits, dict(queue=queue, max_running=max_running, max_per_second=max_per_second,
                                              **_wake(q)))
        limits = dict(max_running=max_running, max_per_second=max_per_second)
        _record(conn, q, queue, "queue_limits",
                f"limits set: max running {max_running or 'unlimited'}, max per second "
                f"{max_per_second or 'unlimited'}", actor, limits)


def history(conn: psycopg.Connection, q: Queries, queue: str, *, limit: int = 50) -> list[QueueEvent]:
    """The queue's actions, newest first."""
    with conn.cursor(row_factory=class_row(QueueEvent)) as cur:
        return cur.execute(q.queue_history, dict(queue=queue, limit=limit)).fetchall()


def _set_paused(conn: psycopg.Connection, q: Queries, queue: str, paused: bool, actor: str | None) -> None:
    validate_name(queue)
    with conn.transaction():
        conn.execute(q.set_queue_paused, dict(queue=queue, paused=paused, **_wake(q)))
        _record(conn, q, queue, "queue_paused" if paused else "queue_resumed",
                "paused: running jobs finish, no new ones start" if paused else "resumed", actor, {})


def _wake(q: Queries) -> dict[str, str]:
    return notifications.encode(q.schema, notifications.QueuesChanged())


def _record(conn: psycopg.Connection, q: Queries, queue: str, kind: str, message: str, actor: str | None,
            data: dict[str, Any]) -> None:
    conn.execute(q.record_queue_action, dict(kind=kind, message=message, actor=actor or default_actor(),
                                             queue=queue, data=json.dumps(data)))
