"""Rescue: attempts whose lease expired go back to waiting (or fail).

A rescued job waits the backoff its task's retry policy gives for that
attempt (pgsteady/retries.py), like any failed attempt: a job that kills its
worker does not come straight back to kill the next one.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

from ..queries import Queries
from ..retries import Retries


class Rescuer:
    name = "rescue"

    def __init__(self, q: Queries, retries: Retries, *, worker_id: str, release: str | None, interval: float,
                 batch: int = 1000) -> None:
        self.q = q
        self.retries = retries
        self.worker_id = worker_id
        self.release = release
        self.interval = interval
        self.batch = batch

    async def run_once(self, conn: psycopg.AsyncConnection) -> int:
        async with conn.transaction():
            cur = await conn.execute(self.q.expired_leases, dict(limit=self.batch))
            expired = await cur.fetchall()
            if not expired:
                return 0
            backoffs = [timedelta(seconds=self.retries.after_failure(task, attempt)) for _, task, attempt in expired]
            cur = await conn.execute(self.q.rescue_expired, dict(
                ids=[job_id for job_id, _, _ in expired], backoffs=backoffs,
                worker_id=self.worker_id, release=self.release))
            return len(await cur.fetchall())
