"""Background duties, each a small service, run by the elected leader.

Every duty (rescue expired leases, run cron, prune finished jobs, keep the
event partitions) is a class with a ``name``, an ``interval`` in seconds and
an ``async run_once(conn) -> int`` that does one pass and says how much it did.
Tests call ``run_once`` directly; workers run them through ``Maintenance``,
which first wins the leader election (a lease row with a fencing token,
leader.py), so that one process in the fleet does each duty. Correctness never depends on there being one leader:
rescue uses SKIP LOCKED, cron a unique key per scheduled time, pruning plain
deletes; the election only saves duplicate work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from ..database import scrub
from .leader import Leader
from .partitions import PartitionKeeper
from .pruner import Pruner
from .rescuer import Rescuer
from .scheduler import Scheduler

log = logging.getLogger("pgsteady.maintenance")

__all__ = ["Leader", "Maintenance", "PartitionKeeper", "Pruner", "Rescuer", "Scheduler", "Service"]


class Service(Protocol):
    name: str
    interval: float

    async def run_once(self, conn: psycopg.AsyncConnection) -> int: ...


class Maintenance:
    """Wins (or waits for) the leadership, then runs each service when due.

    The election runs in a loop of its own, so that a long pass cannot delay
    a renewal past the lease; each pass starts only while the leadership is
    held (Leader.holds)."""

    def __init__(self, leader: Leader, services: list[Service]) -> None:
        self.leader = leader
        self.services = services
        self.passes: dict[str, int] = {s.name: 0 for s in services}
        self._pool: AsyncConnectionPool | None = None

    async def run(self, pool: AsyncConnectionPool) -> None:
        self._pool = pool
        elected = asyncio.Event()
        election = asyncio.create_task(self._elect(pool, elected))
        try:
            await self._serve(pool, elected)
        finally:
            election.cancel()
            await asyncio.gather(election, return_exceptions=True)

    async def _elect(self, pool: AsyncConnectionPool, elected: asyncio.Event) -> None:
        while True:
            try:
                async with asyncio.timeout(self.leader.lease):
                    async with pool.connection() as conn:
                        await self.leader.keep(conn)
            except (psycopg.OperationalError, PoolTimeout, TimeoutError) as exc:
                log.warning("leader election failed (%s)", scrub(str(exc)).strip() or type(exc).__name__)
            if self.leader.holds():
                elected.set()
            await asyncio.sleep(self.leader.interval)

    async def _serve(self, pool: AsyncConnectionPool, elected: asyncio.Event) -> None:
        due = {s.name: 0.0 for s in self.services}
        while True:
            if not self.leader.holds():
                elected.clear()
                due = {s.name: 0.0 for s in self.services}  # a new reign starts with a full round
                await elected.wait()
                continue
            wait = self.leader.interval
            now = time.monotonic()
            for svc in self.services:
                if not self.leader.holds():
                    break  # fenced: every pass asks first
                if now >= due[svc.name]:
                    await self._pass(pool, svc)
                    due[svc.name] = time.monotonic() + svc.interval
                wait = min(wait, max(0.0, due[svc.name] - time.monotonic()))
            await asyncio.sleep(wait)

    async def _pass(self, pool: AsyncConnectionPool, svc: Service) -> None:
        try:
            async with pool.connection() as conn:
                done = await svc.run_once(conn)
        except (psycopg.OperationalError, PoolTimeout) as exc:
            log.warning("%s pass failed (%s)", svc.name, scrub(str(exc)).strip())
            return
        except Exception:  # a bug in one duty must not stop the others
            log.exception("%s pass failed", svc.name)
            return
        self.passes[svc.name] += 1
        (log.info if done else log.debug)("%s: %d done", svc.name, done)

    async def close(self) -> None:
        """Hand the leadership over at once (shutdown)."""
        if self._pool is None or not self.leader.is_leader:
            return
        try:
            async with asyncio.timeout(2.0):
                async with self._pool.connection() as conn:
                    await self.leader.release(conn)
        except (psycopg.Error, PoolTimeout, TimeoutError):
            pass  # the lease passes on its own
