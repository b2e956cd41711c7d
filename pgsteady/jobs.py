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


def retry(conn: psycopg.Connection, q: Queries, job_id: int) -> None:
    """Run a failed or cancelled job again now, allowing one more attempt."""
    try:
        row = conn.execute(q.retry_job, dict(id=job_id, actor=actor())).fetchone()
    except psycopg.errors.UniqueViolation:
        raise InvalidJobState(
            f"job {job_id} cannot be retried: another active job holds its idempotency key "
            "(cancel that one first, or enqueue anew)"
        ) from None
    if row is None:
        raise InvalidJobState(f"job {job_id} is {_state(conn, q, job_id)}; only failed or cancelled jobs can be retried")
    conn.execute(q.notify_queue, dict(channel=f"{q.schema}_jobs", queue=row[1]))


def cancel(conn: psycopg.Connection, q: Queries, job_id: int) -> str:
    """Cancel a waiting job at once, or ask a running job's worker to stop it.
    Returns "cancelled" or "cancel requested"."""
    if conn.execute(q.cancel_waiting_job, dict(id=job_id, actor=actor())).fetchone():
        return "cancelled"
    if conn.execute(q.request_cancel, dict(id=job_id, actor=actor(), channel=f"{q.schema}_control")).fetchone():
        return "cancel requested"
    raise InvalidJobState(f"job {job_id} is {_state(conn, q, job_id)}; only waiting or running jobs can be cancelled")


def _state(conn: psycopg.Connection, q: Queries, job_id: int) -> str:
    row = conn.execute(q.get_job, dict(id=job_id)).fetchone()
    if row is None:
        raise JobNotFound(f"no job with id {job_id}; `pgsteady jobs list` shows recent ones")
    return row[6]
