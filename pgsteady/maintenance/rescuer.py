"""Rescue: attempts whose lease expired go back to waiting (or fail)."""

from __future__ import annotations

import psycopg

from ..queries import Queries


class Rescuer:
    name = "rescue"

    def __init__(self, q: Queries, *, worker_id: str, release: str | None, interval: float, batch: int = 1000) -> None:
        self.q = q
        self.worker_id = worker_id
        self.release = release
        self.interval = interval
        self.batch = batch

    async def run_once(self, conn: psycopg.AsyncConnection) -> int:
        cur = await conn.execute(self.q.rescue_expired, dict(limit=self.batch, worker_id=self.worker_id,
                                                             release=self.release))
        return len(await cur.fetchall())
