"""Cron: turn each due scheduled time into exactly one job.

A pass locks each schedule's row (so two schedulers take turns), computes the
times due since ``last_run_at`` by the database's clock, and for each time it
runs inserts a ``schedule_runs`` row keyed by (schedule, scheduled time) and
the job, in one transaction. The key makes a second scheduler's insert for
the same time a no-op: exactly once is the database's doing, not the
election's. Times left out after downtime are recorded as a
``schedule_missed`` event with how many and why.
"""

from __future__ import annotations

import json
import logging

import psycopg
from psycopg.types.json import Jsonb

from ..errors import ConfigError
from ..queries import Queries
from ..schedules import Schedule

log = logging.getLogger("pgsteady.maintenance")


async def register(conn: psycopg.AsyncConnection, q: Queries, schedules: list[Schedule], tasks: dict) -> None:
    """Write an App's schedules to the database, keeping paused and last run.
    Every worker does this at start; the scheduler then works from the table,
    so the leader runs every schedule even if its own App defines none."""
    now = (await (await conn.execute("SELECT now()")).fetchone())[0]
    for s in schedules:
        task = tasks[s.task]
        await conn.execute(q.upsert_schedule, dict(
            name=s.name, cron=s.cron, tz=s.tz, task=s.task, queue=task.queue, priority=task.priority,
            max_attempts=task.max_attempts, args=json.dumps(s.args), on_missed=s.on_missed, max_waiting=s.max_waiting,
            next_run_at=s.next_after(now)))


class Scheduler:
    name = "cron"

    def __init__(self, q: Queries, *, worker_id: str, release: str | None, interval: float = 0.25) -> None:
        self.q = q
        self.worker_id = worker_id
        self.release = release
        self.interval = interval

    async def _schedules(self, conn: psycopg.AsyncConnection) -> list[Schedule]:
        found = []
        for name, cron, tz, task, args, on_missed, max_waiting in await (
                await conn.execute(self.q.active_schedules)).fetchall():
            try:
                found.append(Schedule(name, cron, tz, task, args, on_missed, max_waiting))
            except ConfigError as exc:  # written by another release with a croniter we cannot read
                log.warning("skipping %s", exc)
        return found

    async def run_once(self, conn: psycopg.AsyncConnection) -> int:
        enqueued = 0
        for s in await self._schedules(conn):
            async with conn.transaction():
                row = await (await conn.execute(self.q.lock_schedule, dict(name=s.name))).fetchone()
                if row is None or row[0]:
                    continue  # removed by hand, or paused
                _, last, now = row
                if last is None:
                    # A new schedule starts counting now; it does not backfill.
                    await conn.execute(self.q.start_schedule, dict(name=s.name, at=now, next_run_at=s.next_after(now)))
                    continue
                due, dropped = s.due(last, now)
                if not due:
                    continue
                waiting = 0
                if s.max_waiting is not None:
                    waiting = (await (await conn.execute(self.q.waiting_runs, dict(name=s.name))).fetchone())[0]
                wanted = s.choose(due, now)
                chosen = s.cap(wanted, waiting)
                last_job = None
                for at in chosen:
                    if await (await conn.execute(self.q.claim_schedule_run, dict(name=s.name, at=at))).fetchone():
                        last_job = (await (await conn.execute(self.q.enqueue_scheduled, dict(name=s.name, at=at))).fetchone())[0]
                        enqueued += 1
                missed = dropped + len(due) - len(chosen)
                if missed:
                    await self._record_missed(conn, s, missed, due, chosen, waiting, capped=len(chosen) < len(wanted))
                await conn.execute(self.q.finish_schedule_pass, dict(
                    name=s.name, last_run_at=due[-1], next_run_at=s.next_after(now), last_job_id=last_job))
        return enqueued

    async def _record_missed(self, conn, s: Schedule, missed: int, due: list, chosen: list, waiting: int, *,
                             capped: bool) -> None:
        ran = f"ran {len(chosen)} of {missed + len(chosen)}"
        if capped:
            why = (f"not enqueued: {waiting} earlier run(s) still wait unclaimed (is a worker serving its "
                   f"queue?), max_waiting={s.max_waiting}" if waiting else
                   f"missed while no scheduler ran; on_missed={s.on_missed}, max_waiting={s.max_waiting}")
        else:
            why = f"missed while no scheduler ran; on_missed={s.on_missed}"
        message = f"schedule {s.name}: {missed} scheduled time(s) {why}: {ran}"
        log.warning(message)
        await conn.execute(self.q.schedule_event, dict(
            kind="schedule_missed", message=message, worker_id=self.worker_id, release=self.release,
            data=Jsonb({"schedule": s.name, "missed": missed, "waiting": waiting, "first_due": due[0].isoformat(),
                        "last_due": due[-1].isoformat(), "ran": [t.isoformat() for t in chosen]})))
