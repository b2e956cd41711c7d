"""Leader election with a lease row and a fencing token.

The leader is the worker named in the ``leader`` row while the row's
``expires_at`` lies ahead. It pushes the expiry forward every ``interval``;
the others try to take the row over at the same pace, and can only once the
expiry has passed. Every takeover increments ``fencing_token``, and every
renewal presents the token it won, so a renewal from an earlier reign
matches nothing:

    follower ──take_lead: row free or expired, token + 1──► leader
        ▲                                                     │ renew_lead every interval
        └── renewal matches nothing, or fails until the ──────┘ (presents its token)
            local deadline; resign_lead at shutdown

Nothing here is session state: each statement may run on any pooled
connection, so a transaction pooler, a killed backend or a cut link cannot
strand the leadership the way a session advisory lock held by a pooled
server session did. A leader that dies or loses its link stops renewing; a
follower takes over at most ``lease + interval`` after its last renewal.

The duties ask ``holds()`` before each pass (Maintenance): the leadership
counts only until the local deadline, the monotonic time at which the last
successful renewal was *sent* plus the lease, which is never later than the
expiry the server recorded. A leader frozen past its lease (SIGSTOP, a stuck
host) therefore wakes up no longer holding it, and finds its token refused
at its next renewal. Correctness never depends on there being one leader
(see maintenance/__init__.py); the fencing keeps the duplicate work small.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import psycopg

from ..queries import Queries

log = logging.getLogger("pgsteady.maintenance")


class Leader:
    def __init__(self, q: Queries, worker_id: str, *, lease: float, name: str = "maintenance") -> None:
        if lease <= 0:
            raise ValueError("the leader's lease must be positive")
        self.q = q
        self.worker_id = worker_id
        self.name = name
        self.lease = lease
        self.interval = lease / 4  # renewals (and tries) per lease: three may fail before it passes
        self.token: int | None = None
        self._deadline = 0.0

    @property
    def is_leader(self) -> bool:
        """This worker won and has not stepped down (see holds() for the duties)."""
        return self.token is not None

    def holds(self) -> bool:
        """Whether a leader-only duty may start now."""
        if self.token is not None and time.monotonic() >= self._deadline:
            self._step_down(f"its lease of {self.lease:g}s passed without a renewal")
        return self.token is not None

    def _params(self) -> dict:
        return dict(name=self.name, worker_id=self.worker_id, lease=timedelta(seconds=self.lease),
                    fencing_token=self.token)

    async def try_acquire(self, conn: psycopg.AsyncConnection) -> bool:
        sent = time.monotonic()
        row = await (await conn.execute(self.q.take_lead, self._params())).fetchone()
        if row is not None:
            self.token, self._deadline = row[0], sent + self.lease
            log.info("worker %s is now the maintenance leader (fencing token %d)", self.worker_id, self.token)
        return self.is_leader

    async def renew(self, conn: psycopg.AsyncConnection) -> bool:
        """Push the lease forward; False once the leadership is gone. A failed
        statement keeps it until the local deadline (the server may be back
        before then); the caller reports the error."""
        if self.token is None:
            return False
        sent = time.monotonic()
        try:
            row = await (await conn.execute(self.q.renew_lead, self._params())).fetchone()
        except psycopg.Error:
            self.holds()
            raise
        if row is None:
            self._step_down("another worker holds it now, or its lease had passed")
        else:
            self._deadline = sent + self.lease
        return self.is_leader

    async def keep(self, conn: psycopg.AsyncConnection) -> bool:
        """One election step: renew when leading, else try to take over."""
        return await (self.renew(conn) if self.is_leader else self.try_acquire(conn))

    async def release(self, conn: psycopg.AsyncConnection) -> None:
        """Step down at shutdown: the lease ends now, so a follower takes over
        at its next try instead of after the lease."""
        if self.token is None:
            return
        try:
            await conn.execute(self.q.resign_lead, self._params())
        finally:
            self.token = None

    def _step_down(self, why: str) -> None:
        log.warning("worker %s lost the maintenance leadership (fencing token %d): %s",
                    self.worker_id, self.token, why)
        self.token = None
