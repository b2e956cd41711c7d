"""Following a build job from outside: its phase, its progress, and who it waits for.

``change apply --wait`` polls, on a connection of its own, the job row, the
step the job writes its backend pid to, ``pg_stat_progress_create_index``
for that pid, and ``pg_blocking_pids`` when the build waits on a lock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import psycopg

from ..errors import PgsteadyError
from ..queries import Queries
from ..indexes import probes
from .targets import row

ENDED = ("succeeded", "failed", "cancelled")


class WaitTimeout(PgsteadyError):
    """The build did not end within --timeout; it goes on in the worker."""


@dataclass
class Snapshot:
    job_state: str
    attempt: int
    pid: int | None = None
    phase: str | None = None
    done: int | None = None
    total: int | None = None
    waiting_on: str | None = None
    blockers: list[dict[str, Any]] = field(default_factory=list)
    step_status: str | None = None
    summary: str | None = None
    last_error: str | None = None
    partitions: dict[str, Any] | None = None  # the partitioned route: done, total, current

    @property
    def describe(self) -> str:
        if self.job_state == "waiting":
            return f"waiting for a worker on the maintenance queue (attempt {self.attempt + 1})" if self.attempt \
                else "waiting for a worker on the maintenance queue"
        if self.job_state in ENDED:
            return self.job_state
        text = self.phase or "starting"
        part = self.partitions
        if part and part.get("total"):
            where = f" ({part['current']})" if part.get("current") else ""
            text = f"partition {min(part['done'] + 1, part['total'])}/{part['total']}{where}: {text}"
        if self.blockers:
            b = self.blockers[0]
            query = " ".join((b.get("query") or "").split())[:80]
            text += f" - waiting for pid {b['pid']} ({b.get('state')}: {query})"
        return text


def snapshot(conn: psycopg.Connection, q: Queries, job_id: int, step_id: int) -> Snapshot:
    job = row(conn, q.job_outcome, {"id": job_id}) or {"state": "missing", "attempt": 0, "last_error": None}
    step = row(conn, q.get_step, {"id": step_id}) or {}
    snap = Snapshot(job["state"], job["attempt"], step_status=step.get("status"), summary=step.get("summary"),
                    last_error=job.get("last_error"))
    pid = (step.get("details") or {}).get("pid")
    snap.partitions = (step.get("details") or {}).get("partitions")
    if job["state"] != "running" or pid is None:
        return snap
    snap.pid = pid
    progress = probes.index_build(conn, pid)
    if progress:
        snap.phase = progress["phase"]
        # The phase decides which counter moves: blocks while scanning, tuples while
        # sorting and loading, lockers while waiting for other transactions.
        for done, total in (("blocks_done", "blocks_total"), ("tuples_done", "tuples_total"),
                            ("lockers_done", "lockers_total")):
            if progress[total]:
                snap.done, snap.total = progress[done], progress[total]
                break
    activity = probes.backend(conn, pid)
    if activity and activity["wait_event_type"] == "Lock":
        snap.waiting_on = activity["wait_event"]
        snap.blockers = probes.blockers(conn, pid)
        if not progress:
            snap.phase = "waiting for a lock on the table"
    elif not progress and activity:
        snap.phase = "inspecting" if activity["state"] != "active" else "running"
    return snap


def follow(conn: psycopg.Connection, q: Queries, job_id: int, step_id: int,
           on_update: Callable[[Snapshot], None], *, timeout: float | None = None,
           interval: float = 0.2) -> Snapshot:
    """Poll until the job ends (or ``timeout`` passes); returns the last snapshot."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        snap = snapshot(conn, q, job_id, step_id)
        on_update(snap)
        if snap.job_state in ENDED or snap.job_state == "missing":
            return snap
        if deadline is not None and time.monotonic() > deadline:
            raise WaitTimeout(f"job {job_id} has not ended after {timeout:g}s ({snap.describe}); it goes on in "
                              f"the worker: `pgsteady change show` or `pgsteady jobs show {job_id}`")
        time.sleep(interval)
