"""Event partitions: create days ahead, drop days past the retention.

Old history goes a partition at a time (DROP TABLE), never row by row. The
drop needs a brief exclusive lock on the events table, so it runs with a
short lock_timeout: behind a long transaction it gives up and the next pass
tries again, instead of queueing every writer behind it.

Creating, attaching and dropping partitions is DDL that only the owner of
the events table may run; a worker role with DML privileges only gets one
line that names the owner and the GRANT that fixes it.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import psycopg
from psycopg import sql

from ..database import scrub
from ..errors import PgsteadyError
from ..migrations import EVENT_DAYS_AHEAD
from ..queries import Queries


class PartitionsNeedOwner(PgsteadyError):
    """The role running the duty may not create or drop event partitions."""


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
        try:
            return await self._run_once(conn)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise await self._needs_owner(conn, exc) from None

    async def _needs_owner(self, conn: psycopg.AsyncConnection, exc: psycopg.Error) -> PartitionsNeedOwner:
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
            await conn.rollback()
        events = sql.Identifier(self.q.schema, "events").as_string(conn)
        cur = await conn.execute("SELECT current_user, (SELECT relowner::regrole::text FROM pg_class"
                                 " WHERE oid = to_regclass(%s))", [events])
        role, owner = await cur.fetchone()
        reason = scrub(str(exc)).strip().splitlines()[0] if str(exc).strip() else "permission denied"
        grant = sql.SQL("GRANT {} TO {}").format(sql.Identifier(owner or "<owner>"), sql.Identifier(role))
        return PartitionsNeedOwner(
            f"the partitions duty cannot manage {self.q.schema}.events as {role} ({reason}): creating and dropping "
            f"partitions needs the privileges of the table's owner {owner}; "
            f"fix: {grant.as_string(conn)}, or run the worker that leads as {owner}")

    async def _run_once(self, conn: psycopg.AsyncConnection) -> int:
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
