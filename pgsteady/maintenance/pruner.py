"""Pruning: finished jobs are deleted after their state's retention.

Deletes go in small batches, each its own short transaction, so pruning never
holds many row locks or bloats one huge transaction; a pass stops after
``max_batches`` and the next pass continues.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

from ..queries import Queries

DEFAULT_RETENTION = {
    "succeeded": timedelta(days=1),
    "failed": timedelta(days=14),
    "cancelled": timedelta(days=14),
}


class Pruner:
    name = "prune"

    def __init__(self, q: Queries, *, retention: dict[str, timedelta] | None = None, interval: float = 60.0,
                 batch: int = 1000, max_batches: int = 50) -> None:
        self.q = q
        self.retention = {**DEFAULT_RETENTION, **(retention or {})}
        self.interval = interval
        self.batch = batch
        self.max_batches = max_batches

    async def run_once(self, conn: psycopg.AsyncConnection) -> int:
        deleted = 0
        for state, keep in self.retention.items():
            for _ in range(self.max_batches):
                cur = await conn.execute(self.q.prune_jobs, dict(state=state, retention=keep, batch=self.batch))
                deleted += cur.rowcount
                if cur.rowcount < self.batch:
                    break
        longest = max(self.retention.values())
        await conn.execute(self.q.prune_schedule_runs, dict(retention=longest))
        await conn.execute(self.q.prune_workers, dict(retention=timedelta(days=1)))
        return deleted
