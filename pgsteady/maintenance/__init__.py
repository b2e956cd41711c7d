"""Background duties, each a small service, run by the elected leader.

Every duty (rescue expired leases, run cron, prune finished jobs, keep the
event partitions) is a class with a ``name``, an ``interval`` in seconds and
an ``async run_once(conn) -> int`` that does one pass and says how much it did.
Tests call ``run_once`` directly; workers run them through ``Maintenance``,
which first wins the leader election (leader.py), so that one process in the
fleet does each duty. Correctness never depends on there being one leader:
rescue uses SKIP LOCKED, cron a unique key per scheduled time, pruning plain
deletes; the election only saves duplicate work.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Protocol

import psycopg
from psycopg_pool import AsyncConnectionPool

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
    """Wins (or waits for) the leadership, then runs each service when due."""

    def __init__(self, leader: Leader, services: list[Service], *, election_interval: float) -> None:
        self.leader = leader
        self.services = services
        self.election_interval = election_interval
        self.passes: dict[str, int] = {s.name: 0 for s in services}

    async def run(self, pool: AsyncConnectionPool) -> None:
        due = {s.name: 0.0 for s in self.services}
        while True:
            try:
                if not self.leader.is_leader:
                    await self.leader.try_acquire()
                elif not await self.leader.renew():
                    continue
            except psycopg.OperationalError as exc:
                log.warning("leader election failed (%s)", scrub(str(exc)).strip())
            wait = self.election_interval
            if self.leader.is_leader:
                now = time.monotonic()
                for svc in self.services:
                    if now >= due[svc.name]:
                        await self._pass(pool, svc)
                        due[svc.name] = time.monotonic() + svc.interval
                    wait = min(wait, max(0.0, due[svc.name] - time.monotonic()))
            await asyncio.sleep(wait)

    async def _pass(self, pool: AsyncConnectionPool, svc: Service) -> None:
        try:
            async with pool.connection() as conn:
                done = await svc.run_once(conn)
        except psycopg.OperationalError as exc:
            log.warning("%s pass failed (%s)", svc.name, scrub(str(exc)).strip())
            return
        except Exception:  # a bug in one duty must not stop the others
            log.exception("%s pass failed", svc.name)
            return
        self.passes[svc.name] += 1
        (log.info if done else log.debug)("%s: %d done", svc.name, done)

    async def close(self) -> None:
        await self.leader.release()
