"""The counter pass: per-minute counters of how attempts ended.

Status and the metrics endpoint must answer in well under a second with
millions of jobs in the history, so they never count jobs or events; they
read ``job_stats`` (per minute, queue, task and release), the same per hour
in ``job_stats_hourly`` (a day is 24 rows per key, not 1,440),
``job_totals`` (since the beginning, for Prometheus counters) and
``error_stats`` (failed attempts per task and message). This pass fills them.

Each pass counts what ended in [watermark, now - settle):

- succeeded attempts from ``jobs.finished_at`` (index ``jobs_finished_idx``),
  because the success path writes no event, and must not start to;
- every other ending from its event (index ``events_counted_idx``): retried,
  failed, discarded, rescued, cancelled, and rejected late writes.

    counter_progress.counted_until ──► [lo ─────── hi) ──► now
                                        counted now   settle: rows stamped here
                                                      may still be committing

The counts, the totals and the new watermark are written in one transaction
under a transaction-level advisory lock, so a pass counts its window exactly
once or not at all, and passes on several processes take turns (the loser
skips). ``settle`` exists because a row's timestamp is taken before it
commits: a row that commits more than ``settle`` after its timestamp is not
counted. The worker's writes are single short statements, so a few seconds
is plenty; these counters are for monitoring, not for accounting.

The first pass starts where the history starts (the earliest ending, at
most ``backfill`` = 24 h ago; on a fresh install, now), so a new install's
counters are current from the first pass. A pass covers at most
``max_span`` so that catching up an older history is done in bounded steps;
while ``behind``, ``interval`` is 0, so the maintenance loop runs the next
step at once rather than one hour of history every 10 seconds, and the
other duties still get their turn between steps. Minutes older than
``keep`` are pruned.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import psycopg

from ..queries import Queries
from .counts import SECONDS

log = logging.getLogger("pgsteady.monitoring")


class CounterPass:
    """A maintenance service: ``await run_once(conn)`` counts one window and
    returns how many attempts (and rejected writes) it counted."""

    name = "counters"

    def __init__(
        self,
        q: Queries,
        *,
        interval: float = 10.0,
        settle: timedelta = timedelta(seconds=5),
        max_span: timedelta = timedelta(hours=1),
        backfill: timedelta = timedelta(hours=24),
        keep: timedelta = timedelta(days=8),
    ) -> None:
        if settle < timedelta(0) or max_span <= timedelta(0) or backfill < timedelta(0) or keep <= timedelta(0):
            raise ValueError("CounterPass needs settle >= 0, max_span > 0, backfill >= 0 and keep > 0")
        self.q = q
        self._interval = interval
        self.settle = settle
        self.max_span = max_span
        self.backfill = backfill
        self.keep = keep
        self.behind = False

    @property
    def interval(self) -> float:
        """Seconds until the next pass: none while catching up."""
        return 0.0 if self.behind else self._interval

    async def run_once(self, conn: psycopg.AsyncConnection) -> int:
        q = self.q
        async with conn.transaction():
            locked = await (await conn.execute(q.counter_lock, dict(lock=f"{q.schema}.counters"))).fetchone()
            if not locked[0]:
                return 0  # another process is counting this very window
            await conn.execute(q.counter_start, dict(backfill=self.backfill, settle=self.settle))
            lo, hi, behind = await (await conn.execute(q.counter_bounds, dict(
                settle=self.settle, max_span=self.max_span))).fetchone()
            counted = 0
            if hi > lo:
                counted = (await (await conn.execute(q.count_attempts, dict(lo=lo, hi=hi, bounds=list(SECONDS)))).fetchone())[0]
            await conn.execute(q.counter_advance, dict(hi=hi))
            await conn.execute(q.prune_counters, dict(keep=self.keep))
        self.behind = bool(behind)
        if self.behind:
            log.info("counters are catching up: counted to %s", hi.isoformat())
        return counted

    async def catch_up(self, conn: psycopg.AsyncConnection, *, max_passes: int = 1000) -> int:
        """Passes until the counters are current (tests, benchmarks, one-off scripts)."""
        total = 0
        for _ in range(max_passes):
            total += await self.run_once(conn)
            if not self.behind:
                break
        return total
