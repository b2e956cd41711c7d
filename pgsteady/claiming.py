"""Claim rounds: when a worker claims, how much, and on which connection.

A round is one statement (complete_and_claim in sql/worker.sql): it marks the
attempts that finished since the last round succeeded and claims the next
jobs. When a round is due, how many jobs it may claim beyond the free slots
(only for short jobs), and the second lane that keeps the database busy
while the worker runs what the last round brought are decided here.

A mixin of Worker (pgsteady/worker.py), whose state it reads and changes:
the running count, the attempts claimed ahead (_ready), the finished ones
waiting to be recorded (_done) and the stats. Everything here runs on the
worker's event loop, so no lock is needed between the lanes: a round takes
its slots and its completions before it awaits the database.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta

import psycopg

from . import database
from .attempts import Attempt
from .tasks import Context

log = logging.getLogger("pgsteady.worker")

# Claiming ahead of free slots, for short jobs only (see ClaimRounds._prefetch).
PREFETCH_SECONDS = 0.05
MAX_PREFETCH = 400

# Settings of the claimer's session (see ClaimRounds._claim_connection).
CLAIM_SESSION_OPTIONS = "-c enable_bitmapscan=off -c enable_sort=off"


class ClaimRounds:
    """The claim side of Worker; see the module's docstring."""

    async def _claim_loop(self, until_idle: bool, lane: int) -> None:
        """One claimer lane. Lane 0 is the claimer; lane 1 runs a second round
        only while lane 0's is in flight and jobs are short (see _claim_due),
        so a fast queue keeps the database busy while the worker runs what
        the last round brought, and a slow one never opens its connection."""
        while not self._stopping.is_set() and not self._idle:
            self._wakes[lane].clear()  # what woke us is seen below; a wake during the claim is kept
            if self._claim_due(lane):
                # A job may finish (and reschedule itself) while the claim is
                # in flight, so "idle" needs nothing running from before it.
                busy_before = self._running > 0 or bool(self._done) or bool(self._ready) or self._inflight > 0
                free = max(self._free(), 0)
                try:
                    got = await self._claim(free, lane)
                except psycopg.OperationalError as exc:
                    log.warning("claim failed (%s); retrying", database.scrub(str(exc)).strip())
                    await self._sleep(1.0)
                    continue
                if got and got == free:
                    continue  # the queue may hold more
                if (until_idle and got == 0 and self._running == 0 and not self._done and not self._ready
                        and self._inflight == 0):
                    if not busy_before:
                        self._idle = True
                        self._wake()  # the other lane sees it and returns too
                        return
                    self._wake()  # the last jobs just finished: look once more, at once
                    continue
            await self._sleep(self.poll_interval, self._wakes[lane])

    def _wake(self) -> None:
        for event in self._wakes:
            event.set()

    def _free(self) -> int:
        return self._capacity - self._running - len(self._ready) - self._inflight

    def _claim_due(self, lane: int = 0) -> bool:
        """Whether a round is worth a statement now: a slot is idle with
        nothing claimed ahead to fill it, or a third of the capacity is free
        (short jobs free slots one at a time; claiming each alone would make
        many one-row rounds), or many finished attempts wait to be recorded.

        The threshold is a third, not a half, because the claimer resumes
        only after the job steps already queued on the loop: by the time its
        statement is sent, more slots are free, and the jobs claimed ahead
        keep the slots busy while the round is in flight."""
        if lane and not (self._inflight and self._capacity > self.concurrency):
            return False
        free = self._free()
        if free > 0 and (not self._ready or 3 * free >= self._capacity):
            return True
        return len(self._done) >= self.complete_batch

    async def _claim(self, limit: int, lane: int = 0) -> int:
        """One round: complete what finished, claim up to ``limit`` jobs.
        The slots it may fill and the completions it carries are taken
        before it is sent, so a round on the other lane cannot take them too."""
        self._capacity = self.concurrency + self._prefetch()  # run times move slowly: once per round
        params = dict(limit=limit, lease=timedelta(seconds=self.lease), worker_id=self.id, release=self.app.release)
        batch = self._done[: self.complete_batch]
        del self._done[: len(batch)]
        self._inflight += limit
        rows = []
        try:
            for queue in await self._limited_queues() if limit else ():
                if len(rows) < limit:
                    rows += await self._claim_limited(queue, dict(params, limit=limit - len(rows), queue=queue), lane)
            if len(rows) < limit or batch:
                conn = await self._claim_connection(lane)
                cur = await conn.execute(self.q.complete_and_claim, dict(
                    params, queues=self.queues, limit=limit - len(rows),
                    ids=[a.id for a in batch], tokens=[a.token for a in batch]))
                *claimed, (*_, completed) = await cur.fetchall()
                rows += claimed
                self._completed(batch, completed)
                batch = []
        finally:
            self._inflight -= limit
            self._done[:0] = batch  # not recorded: the next round carries them again
            self._take(rows)
        return len(rows)

    def _take(self, rows: list[tuple]) -> None:
        for row in rows:
            job_id, queue, task_name, args, key, attempt, max_attempts, token, checkpoint, *_ = row
            ctx = Context(id=job_id, attempt=attempt, key=key, args=args, task=task_name, queue=queue,
                          max_attempts=max_attempts, last_checkpoint=checkpoint, runtime=self, token=token)
            att = Attempt(job_id, token, attempt, task_name, ctx)
            self._active[job_id] = att
            self._ready.append(att)
        self.stats.claimed += len(rows)
        self._start_ready()

    def _completed(self, batch: list[Attempt], accepted: list[int]) -> None:
        for att in batch:
            self._active.pop(att.id, None)
        self.stats.succeeded += len(accepted)
        self.stats.rejected += len(batch) - len(accepted)

    def _prefetch(self) -> int:
        """How many jobs to claim beyond the free slots: as many as the slots
        run in PREFETCH_SECONDS at the average attempt time, at most
        MAX_PREFETCH, and none once attempts average PREFETCH_SECONDS or more.

        Short jobs then come in big rounds (one statement completes and
        claims ~150 no-op jobs at concurrency 20), and the jobs claimed ahead keep the slots
        busy while the next round is in flight. A job claimed ahead waits at
        most about PREFETCH_SECONDS for a slot, and its lease is renewed
        meanwhile; long jobs are never claimed ahead, so they stay claimable
        by idle workers elsewhere."""
        if self._run_time >= PREFETCH_SECONDS:
            return 0
        return min(MAX_PREFETCH, int(self.concurrency * PREFETCH_SECONDS / max(self._run_time, 1e-4)))

    async def _limited_queues(self) -> list[str]:
        """This worker's queues that have a fleet-wide limit (cached for 2 s,
        refreshed at once when `queues limit` notifies)."""
        if time.monotonic() - self._limited_at > 2.0:
            rows = await self._fetch(self.q.limited_queues, {})
            self._limited = [r[0] for r in rows if self.queues is None or r[0] in self.queues]
            self._limited_at = time.monotonic()
        return self._limited

    async def _claim_limited(self, queue: str, params: dict, lane: int) -> list[tuple]:
        conn = await self._claim_connection(lane)
        async with conn.transaction():
            # The row lock first, in its own statement: the claim that
            # follows then sees every claim committed before it.
            await conn.execute(self.q.lock_queue, params)
            return await (await conn.execute(self.q.claim_limited, params)).fetchall()

    async def _claim_connection(self, lane: int) -> psycopg.AsyncConnection:
        """A claimer lane's own connection (one round at a time on each).

        Its session forbids bitmap scans and sorts: the claim must walk
        jobs_claim_idx in order and stop at its LIMIT. Without statistics (a
        queue filled faster than autovacuum analyses it) PostgreSQL would
        otherwise read and sort every waiting job for each claim."""
        conn = self._claim_conns[lane]
        if conn is None or conn.broken or conn.closed:
            conn = self._claim_conns[lane] = await psycopg.AsyncConnection.connect(
                self.app.dsn, autocommit=True, options=CLAIM_SESSION_OPTIONS)
        return conn
