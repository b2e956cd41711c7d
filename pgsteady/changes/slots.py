"""One index build per table: a lease row with a fencing token.

The build that holds a table's slot is the one named in its ``build_slots``
row while the row's ``expires_at`` lies ahead. It renews the row every
quarter lease from a thread of its own while the DDL runs; another build on
the same table waits, and takes the row over only once the expiry has
passed. Every takeover increments ``fencing_token`` and every renewal
presents the token it won, so a renewal from an earlier holder matches
nothing:

    waiting ──take_build_slot: row free or expired, token + 1──► holding
       ▲                                                           │ renew_build_slot every lease/4
       └──── renewal matches nothing, or fails past the local ─────┘ (presents its token);
             deadline: the DDL is cancelled; release at the end       release_build_slot

Nothing here is session state (the advisory lock it replaces was), so each
statement may run on any pooled connection: a transaction pooler, a killed
backend or a cut link cannot strand a table's slot. A builder that dies stops
renewing, and a waiting build takes over at most a lease after its last
renewal. A builder that learns it lost the slot (its renewal is refused, or
its local deadline passes without a successful one, as after a freeze)
cancels its own DDL and runs no more; ``holds()`` is asked before each
statement. The catalogue check of the build (an INVALID index "being built"
by a live backend is waited for, never dropped) covers the moments between
a holder's lease passing and it noticing.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from datetime import timedelta
from typing import Any, Callable

import psycopg

from ..database import connect
from .targets import row

log = logging.getLogger("pgsteady.changes")

DEFAULT_LEASE = 30.0  # seconds; [build] slot_lease of a change file


class Slot:
    """The slot of one table, as one build attempt sees it."""

    def __init__(self, app: Any, table_oid: int, *, job_id: int | None, attempt: int, lease: float) -> None:
        if lease <= 0:
            raise ValueError("a build slot's lease must be positive")
        self.app, self.q = app, app.queries
        self.table_oid = table_oid
        self.job_id = job_id
        self.lease = lease
        # Unique per attempt and process, so a later attempt of the same job is another holder.
        self.holder = f"job {job_id} attempt {attempt} pid {os.getpid()} {secrets.token_hex(4)}"
        self.token: int | None = None
        self.lost: str | None = None  # why the slot was lost while held
        self._deadline = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _params(self) -> dict[str, Any]:
        return dict(table_oid=self.table_oid, holder=self.holder, job_id=self.job_id,
                    lease=timedelta(seconds=self.lease), fencing_token=self.token)

    def try_take(self, conn: psycopg.Connection) -> bool:
        sent = time.monotonic()
        row = conn.execute(self.q.take_build_slot, self._params()).fetchone()
        if row is not None:
            self.token, self._deadline = row[0], sent + self.lease
        return self.token is not None

    def holder_now(self, conn: psycopg.Connection) -> dict[str, Any] | None:
        return row(conn, self.q.build_slot_holder, self._params())

    def holds(self) -> bool:
        """Whether this build may run its next statement."""
        if self.token is not None and self.lost is None and time.monotonic() >= self._deadline:
            self.lost = f"its lease of {self.lease:g}s passed without a renewal"
        return self.token is not None and self.lost is None

    def keep(self, on_lost: Callable[[str], None]) -> None:
        """Renew the slot from a thread until ``release``; ``on_lost(why)`` when it is gone."""
        self._thread = threading.Thread(target=self._renew_loop, args=(on_lost,), daemon=True,
                                        name=f"pgsteady-build-slot-{self.table_oid}")
        self._thread.start()

    def _renew_loop(self, on_lost: Callable[[str], None]) -> None:
        conn: psycopg.Connection | None = None
        try:
            while not self._stop.wait(self.lease / 4):
                sent = time.monotonic()
                try:
                    if conn is None or conn.closed:
                        conn = connect(self.app.dsn, autocommit=True, pooler=self.app.pooler)
                    row = conn.execute(self.q.renew_build_slot, self._params()).fetchone()
                except Exception as exc:  # the server may be back before the deadline
                    if conn is not None:
                        conn.close()
                    conn = None
                    log.warning("build slot of table %s: renewal failed (%s)", self.table_oid,
                                str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
                    if not self.holds() and not self._stop.is_set():
                        on_lost(self.lost)
                        return
                    continue
                if row is None:
                    if not self._stop.is_set():
                        self.lost = "another build holds it now, or its lease had passed"
                        on_lost(self.lost)
                    return
                self._deadline = sent + self.lease
        finally:
            if conn is not None:
                conn.close()

    def release(self, conn: psycopg.Connection) -> None:
        """Stop renewing and end the lease now, so a waiting build takes over at its next try.
        Best effort: when the build's connection is gone, the lease ends by itself."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.lease)
        if self.token is None:
            return
        try:
            if conn.closed or conn.broken:
                with connect(self.app.dsn, autocommit=True, pooler=self.app.pooler) as fresh:
                    fresh.execute(self.q.release_build_slot, self._params())
            else:
                conn.execute(self.q.release_build_slot, self._params())
        except Exception as exc:
            log.warning("build slot of table %s: not released (%s); it ends with its lease of %gs",
                        self.table_oid, type(exc).__name__, self.lease)
        finally:
            self.token = None


class SlotLost(Exception):
    """This build no longer holds its table's slot; the job retries later."""
