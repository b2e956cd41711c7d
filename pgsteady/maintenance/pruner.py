"""Pruning: finished jobs are deleted after their state's retention.

Deletes go in small batches, each its own short transaction, so pruning never
holds many row locks or bloats one huge transaction; a pass stops after
``max_batches`` and the next pass continues.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg

from ..errors import ConfigError, check_options
from ..queries import Queries

DEFAULT_RETENTION = {
    "succeeded": timedelta(days=1),
    "failed": timedelta(days=14),
    "cancelled": timedelta(days=14),
}


def check_retention(retention: object) -> dict[str, timedelta]:
    """Worker(retention=...) checked up front: a misspelt state would
    otherwise fail every pruning pass, and with it the rest of the pass."""
    if retention is None:
        return dict(DEFAULT_RETENTION)
    if not isinstance(retention, dict):
        raise ConfigError("retention must be a dict of state -> datetime.timedelta, e.g. {'succeeded': timedelta(days=1)}")
    check_options(retention, tuple(DEFAULT_RETENTION), "retention")
    for state, keep in retention.items():
        if not isinstance(keep, timedelta) or keep < timedelta(0):
            raise ConfigError(f"retention[{state!r}] must be a non-negative datetime.timedelta, not {keep!r}")
    return {**DEFAULT_RETENTION, **retention}


class Pruner:
    name = "prune"

    def __init__(self, q: Queries, *, retention: dict[str, timedelta] | None = None, interval: float = 60.0,
                 batch: int = 1000, max_batches: int = 50) -> None:
        self.q = q
        self.retention = check_retention(retention)
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
