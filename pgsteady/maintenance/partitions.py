"""Event partitions: create days ahead, drop days past the retention.

Old history goes a partition at a time (DROP TABLE), never row by row. The
drop needs a brief exclusive lock on the events table, so it runs with a
short lock_timeout: behind a long transaction it gives up and the next pass
tries again, instead of queueing every writer behind it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
from psycopg import sql

from ..migrations import EVENT_DAYS_AHEAD
from ..queries import Queries


class PartitionKeeper:
    name = "partitions"

    def __init__(self, q: Queries, *, retention: timedelta = timedelta(days=14), interval: float = 3600.0,
                 lock_timeout: str = "2s") -> None:
        self.q = q
        self.retention = retention
        self.interval = interval
        self.lock_timeout = lock_timeout

    async def run_once(self, conn: psycopg.AsyncConnection) -> int:
        """Partitions created plus partitions dropped."""
        created = (await (await conn.execute(self.q.ensure_event_partitions,
                                             dict(days_ahead=EVENT_DAYS_AHEAD))).fetchone())[0]
        oldest_kept = datetime.now(timezone.utc).date() - timedelta(days=self.retention.days)
        dropped = 0
        for name, _bound in await (await conn.execute(self.q.event_partitions)).fetchall():
            day = date(int(name[7:11]), int(name[11:13]), int(name[13:15]))
            if day >= oldest_kept:
                continue
            try:
                async with conn.transaction():
                    await conn.execute(sql.SQL("SET LOCAL lock_timeout = {}").format(sql.Literal(self.lock_timeout)))
                    await conn.execute(sql.SQL("DROP TABLE {}.{}").format(sql.Identifier(self.q.schema),
                                                                         sql.Identifier(name)))
                dropped += 1
            except psycopg.errors.LockNotAvailable:
                break
        return created + dropped
