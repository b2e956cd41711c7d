"""Leader election with a session advisory lock.

The leader is the process whose dedicated connection holds
``pg_advisory_lock(hashtext('<schema>.maintenance'))``. If that process dies
or loses its connection, PostgreSQL releases the lock, and the next follower
that tries (every election interval) becomes leader. The leader renews its
row in the ``leader`` table before every pass; a follower that finds the row
not renewed for ``stale`` seconds (the leader is frozen: SIGSTOP, a stuck
host, a hung event loop) ends the holder's session, which frees the lock.

    follower ──try_acquire() wins──► leader ──connection lost──► follower
        ▲                               │ renew() before each pass
        └── release() / renew fails ◄───┘ (shutdown, or taken over)
"""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg

from ..queries import Queries

log = logging.getLogger("pgsteady.maintenance")


class Leader:
    def __init__(self, dsn: str | None, q: Queries, worker_id: str, *, stale: float, name: str = "maintenance") -> None:
        self.dsn = dsn
        self.stale = timedelta(seconds=stale)
        self.q = q
        self.worker_id = worker_id
        self.name = name
        self.is_leader = False
        self._conn: psycopg.AsyncConnection | None = None

    def _params(self) -> dict:
        return dict(name=self.name, worker_id=self.worker_id, lock=f"{self.q.schema}.{self.name}")

    async def try_acquire(self) -> bool:
        if self._conn is None or self._conn.closed:
            self._conn = await psycopg.AsyncConnection.connect(
                self.dsn, autocommit=True, application_name=f"pgsteady leader candidate {self.worker_id}"[:63])
        won = (await (await self._conn.execute(self.q.try_lead, self._params())).fetchone())[0]
        if not won:
            ended = await (await self._conn.execute(self.q.end_stale_leader,
                                                    dict(self._params(), stale=self.stale))).fetchall()
            for stale_worker, _ in ended:
                log.warning("leader %s stopped renewing for over %s; ended its session to take over",
                            stale_worker, self.stale)
            if ended:
                won = (await (await self._conn.execute(self.q.try_lead, self._params())).fetchone())[0]
        if won:
            await self._conn.execute(self.q.record_leader, self._params())
            self.is_leader = True
            log.info("worker %s is now the maintenance leader", self.worker_id)
        return self.is_leader

    async def renew(self) -> bool:
        """Check the lock's connection is alive and refresh the leader row."""
        try:
            renewed = await (await self._conn.execute(self.q.renew_leader, self._params())).fetchall()
        except psycopg.Error as exc:
            log.warning("lost the maintenance leadership (%s)", type(exc).__name__)
            await self._drop()
        else:
            if not renewed:
                log.warning("the maintenance leadership was taken over; stepping down")
                await self._drop()
        return self.is_leader

    async def release(self) -> None:
        if self._conn is not None and not self._conn.closed and self.is_leader:
            try:
                await self._conn.execute(self.q.resign_leader, self._params())
            except psycopg.Error:
                pass
        await self._drop()

    async def _drop(self) -> None:
        self.is_leader = False
        if self._conn is not None:
            await self._conn.close()  # closing the session releases the advisory lock
            self._conn = None
