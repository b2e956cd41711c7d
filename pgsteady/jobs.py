"""Looking at jobs and acting on them by hand: list, show, retry, cancel.

Every manual action is recorded in the job's history with who did it.
"""

from __future__ import annotations

import getpass
import os
import socket
from datetime import datetime
from typing import Any

import psycopg
from psycopg.rows import dict_row

from . import notifications
from .errors import InvalidJobState, JobNotFound
from .queries import Queries

STATES = ("waiting", "running", "succeeded", "failed", "cancelled")


def user_at_host() -> str:
    """The person at the keyboard, as user@host."""
    try:
        user = getpass.getuser()
    except Exception:  # no user name in some containers
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def actor() -> str:
    """Who acted by hand, for the history: cli:user@host:pid."""
    return f"cli:{user_at_host()}:{os.getpid()}"


default_actor = actor  # the parameters named `actor` below shadow the function


def list_jobs(conn: psycopg.Connection, q: Queries, *, state: str | None = None, queue: str | None = None,
              task: str | None = None, since: datetime | None = None, limit: int = 50) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q.list_jobs, dict(state=state, queue=queue, task=task, since=since, limit=limit)).fetchall()


def get_job(conn: psycopg.Connection, q: Queries, job_id: int) -> dict[str, Any]:
    """The job row with its event history under "events"."""
    with conn.cursor(row_factory=dict_row) as cur:
        job = cur.execute(q.get_job, dict(id=job_id)).fetchone()
        if job is None:
            raise JobNotFound(f"no job with id {job_id}; `pgsteady jobs list` shows recent ones")
        job["events"] = cur.execute(q.job_events, dict(id=job_id)).fetchall()
    return job


def retry(conn: psycopg.Connection, q: Queries, job_id: int, *, actor: str | None = None) -> None:
    """Run a failed or cancelled job again now, allowing one more attempt.

    ``actor`` is who asked, for the history (default: the person at this
    terminal, see ``actor()``); the CLI and the dashboard both call this."""
    who = actor or default_actor()
    try:
        row = conn.execute(q.retry_job, dict(id=job_id, actor=who)).fetchone()
    except psycopg.errors.UniqueViolation:
        raise InvalidJobState(
            f"job {job_id} cannot be retried: another active job holds its idempotency key "
            "(cancel that one first, or enqueue anew)"
        ) from None
    if row is None:
        raise InvalidJobState(f"job {job_id} is {_state(conn, q, job_id)}; only failed or cancelled jobs can be retried")
    conn.execute(q.notify, notifications.encode(q.schema, notifications.JobsAvailable(row[1])))


def cancel(conn: psycopg.Connection, q: Queries, job_id: int, *, actor: str | None = None) -> str:
    """Cancel a waiting job at once, or ask a running job's worker to stop it.
    Returns "cancelled" or "cancel requested".

    The request is the row's ``cancel_requested`` (with ``actor`` recorded),
    which needs UPDATE on the jobs table; the notification sent with it only
    makes the worker look sooner. A running attempt whose function has
    already returned is not cancelled: it ends as it finished."""
    who = actor or default_actor()
    if conn.execute(q.cancel_waiting_job, dict(id=job_id, actor=who)).fetchone():
        return "cancelled"
    notify = notifications.encode(q.schema, notifications.CancelRequested(job_id))
    if conn.execute(q.request_cancel, dict(id=job_id, actor=who, **notify)).fetchone():
        return "cancel requested"
    raise InvalidJobState(f"job {job_id} is {_state(conn, q, job_id)}; only waiting or running jobs can be cancelled")


def _state(conn: psycopg.Connection, q: Queries, job_id: int) -> str:
    row = conn.execute(q.get_job, dict(id=job_id)).fetchone()
    if row is None:
        raise JobNotFound(f"no job with id {job_id}; `pgsteady jobs list` shows recent ones")
    return row[6]
