"""The Claimer: when a worker claims, how much, and on which connection.

A round is one statement (complete_and_claim in sql/attempts.sql): it records
the successes waiting in the Completer and claims the next jobs. The Claimer
owns what a round needs: the lanes and their connections, the jobs claimed
ahead of free slots (``ready``), how many it may claim beyond the free slots
(only for short jobs), and the cache of queues with a fleet-wide limit.

Everything here runs on the worker's event loop, so no lock is needed between
the lanes: a round takes its slots and its completions before it awaits the
database.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Iterable

import psycopg
from psycopg.rows import RowMaker

from . import database
from .attempts import Attempt, Runner, WorkerStats
from .completing import Completer, Db
from .tasks import Context
from .topology import Link, application_name

if TYPE_CHECKING:
    from .app import App

log = logging.getLogger("pgsteady.worker")

# Claiming ahead of free slots, for short jobs only (see Claimer._prefetch).
PREFETCH_SECONDS = 0.05
MAX_PREFETCH = 400

# The claimer's session settings, in one place (see Claimer._connection):
# the claim must walk jobs_claim_idx in order and stop at its LIMIT. Never
# sent as the `options` startup parameter (PgBouncer refuses it): SET once per
# session, or SET LOCAL around each claim behind a transaction pooler.
CLAIM_SESSION_SETTINGS = {"enable_bitmapscan": "off", "enable_sort": "off"}


class Claimer:
    """The claim side of a Worker; see the module's docstring."""

    def __init__(self, app: App, runner: Runner, completer: Completer, db: Db, stats: WorkerStats, *,
                 worker_id: str, queues: list[str] | None, concurrency: int, lease: float, poll_interval: float,
                 complete_batch: int, stopping: asyncio.Event) -> None:
        self.app = app
        self.q = app.queries
        self.worker_id = worker_id
        self.queues = queues
        self.concurrency = concurrency
        self.lease = timedelta(seconds=lease)
        self.poll_interval = poll_interval
        self.complete_batch = complete_batch
        self.stopping = stopping
        self.runner = runner
        self.completer = completer
        self.db = db
        self.stats = stats
        self.ready: deque[Attempt] = deque()  # claimed, waiting for a free slot
        self.conns: list[psycopg.AsyncConnection | None] = [None, None]  # one per lane
        self.capacity = self.concurrency  # slots plus the jobs claimed ahead (see _prefetch)
        self.inflight = 0  # slots reserved by rounds in flight
        self.idle = False  # until_idle: a lane found nothing left to do
        # One wake-up event per lane, so that a lane which looks and finds
        # nothing to do cannot swallow a wake-up meant for the other.
        self._wakes = (asyncio.Event(), asyncio.Event())
        self._limited: list[str] = []
        self._limited_at = 0.0
        self._link: Link | None = None  # the claim sessions' (see use_link)
        runner.on_finished = self._slot_freed

    # -- what the others call -------------------------------------------------

    def wake(self) -> None:
        for event in self._wakes:
            event.set()

    def use_link(self, link: Link) -> None:
        """How the claim sessions reach the server: the worker's link, with
        the claim's own settings."""
        self._link = link.with_settings(CLAIM_SESSION_SETTINGS)

    def queues_changed(self) -> None:
        self._limited_at = 0.0
        self.wake()

    async def run(self, until_idle: bool) -> None:
        self.idle = False  # a Worker may run until idle again, for the jobs enqueued since
        await asyncio.gather(self._lane(until_idle, 0), self._lane(until_idle, 1))

    async def complete_only(self) -> None:
        await self._round(0)

    async def close(self) -> None:
        for conn in self.conns:
            if conn is not None:
                await conn.close()  # a later run reconnects (see _connection)

    # -- lanes ----------------------------------------------------------------

    async def _lane(self, until_idle: bool, lane: int) -> None:
        """One claimer lane. Lane 0 is the claimer; lane 1 runs a second round
        only while lane 0's is in flight and jobs are short (see _due), so a
        fast queue keeps the database busy while the worker runs what the
        last round brought, and a slow one never opens its connection."""
        c = self.completer
        while not self.stopping.is_set() and not self.idle:
            self._wakes[lane].clear()  # what woke us is seen below; a wake during the claim is kept
            if self._due(lane):
                # A job may finish (and reschedule itself) while the claim is
                # in flight, so "idle" needs nothing running from before it.
                busy_before = self.runner.running > 0 or bool(c.done) or bool(self.ready) or self.inflight > 0
                free = max(self._free(), 0)
                try:
                    got = await self._round(free, lane)
                except psycopg.OperationalError as exc:
                    log.warning("claim failed (%s); retrying", database.scrub(str(exc)).strip())
                    await sleep(1.0)
                    continue
                if got and got == free:
                    continue  # the queue may hold more
                if (until_idle and got == 0 and self.runner.running == 0 and not c.done and not self.ready
                        and self.inflight == 0):
                    if not busy_before:
                        self.idle = True
                        self.wake()  # the other lane sees it and returns too
                        return
                    self.wake()  # the last jobs just finished: look once more, at once
                    continue
            await sleep(self.poll_interval, self._wakes[lane])

    def _free(self) -> int:
        return self.capacity - self.runner.running - len(self.ready) - self.inflight

    def _due(self, lane: int = 0) -> bool:
        """Whether a round is worth a statement now: a slot is idle with
        nothing claimed ahead to fill it, or a third of the capacity is free
        (short jobs free slots one at a time; claiming each alone would make
        many one-row rounds), or many finished attempts wait to be recorded.

        The threshold is a third, not a half, because the claimer resumes
        only after the job steps already queued on the loop: by the time its
        statement is sent, more slots are free, and the jobs claimed ahead
        keep the slots busy while the round is in flight."""
        if lane and not (self.inflight and self.capacity > self.concurrency):
            return False
        free = self._free()
        if free > 0 and (not self.ready or 3 * free >= self.capacity):
            return True
        return len(self.completer.done) >= self.complete_batch

    def _slot_freed(self) -> None:
        self._start_ready()
        if self._due():
            self.wake()

    def _start_ready(self) -> None:
        ready, runner = self.ready, self.runner
        while ready and runner.running < self.concurrency and not self.stopping.is_set():
            att = ready.popleft()
            if att.lost:
                continue  # its lease went while it waited: another worker owns the job now
            runner.start(att)

    # -- rounds ---------------------------------------------------------------

    async def _round(self, limit: int, lane: int = 0) -> int:
        """One round: complete what finished, claim up to ``limit`` jobs.
        The slots it may fill and the completions it carries are taken
        before it is sent, so a round on the other lane cannot take them too."""
        self.capacity = self.concurrency + self._prefetch()  # run times move slowly: once per round
        params = dict(limit=limit, lease=self.lease, worker_id=self.worker_id, release=self.app.release)
        done = self.completer.done
        batch = done[: self.complete_batch]
        del done[: len(batch)]
        self.inflight += limit
        claimed: list[Attempt] = []
        try:
            for queue in await self._limited_queues() if limit else ():
                if len(claimed) < limit:
                    claimed += await self._claim_limited(dict(params, limit=limit - len(claimed), queue=queue), lane)
            if len(claimed) < limit or batch:
                conn = await self._connection(lane)
                cur = conn.cursor(row_factory=self._rows)
                async with self._link.in_force_async(conn):
                    await cur.execute(self.q.complete_and_claim, dict(
                        params, queues=self.queues, limit=limit - len(claimed),
                        ids=array_literal(a.id for a in batch), tokens=array_literal(a.token for a in batch)))
                    *got, completed = await cur.fetchall()
                claimed += got
                self.completer.completed(batch, completed)
                batch = []
        finally:
            self.inflight -= limit
            done[:0] = batch  # not recorded: the next round carries them again
            self._take(claimed)
        return len(claimed)

    def _rows(self, cursor: Any) -> RowMaker:
        """Claimed rows, read by column name, straight into Attempts (no
        object in between); the completion row of complete_and_claim (no id)
        gives its list of accepted ids."""
        col = {c.name: i for i, c in enumerate(cursor.description)}
        i_id, i_q, i_task, i_args, i_key, i_att, i_max, i_tok, i_cp = (
            col["id"], col["queue"], col["task"], col["args"], col["key"], col["attempt"], col["max_attempts"],
            col["lease_token"], col["checkpoint"])
        i_done = col.get("completed")
        runner = self.runner

        def make(values: Any) -> Any:
            job_id = values[i_id]
            if job_id is None:
                return values[i_done]
            ctx = Context(id=job_id, attempt=values[i_att], key=values[i_key], args=values[i_args],
                          task=values[i_task], queue=values[i_q], max_attempts=values[i_max],
                          last_checkpoint=values[i_cp], runtime=runner, token=values[i_tok])
            return Attempt(job_id, values[i_tok], values[i_att], values[i_task], ctx)

        return make

    def _take(self, claimed: list[Attempt]) -> None:
        active = self.completer.active
        for att in claimed:
            active[att.id] = att
        self.ready.extend(claimed)
        self.stats.claimed += len(claimed)
        self._start_ready()

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
        run_time = self.runner.run_time
        if run_time >= PREFETCH_SECONDS:
            return 0
        return min(MAX_PREFETCH, int(self.concurrency * PREFETCH_SECONDS / max(run_time, 1e-4)))

    async def _limited_queues(self) -> list[str]:
        """This worker's queues that have a fleet-wide limit (cached for 2 s,
        refreshed at once when `queues limit` notifies)."""
        if time.monotonic() - self._limited_at > 2.0:
            rows = await self.db.fetch(self.q.limited_queues, {})
            self._limited = [r[0] for r in rows if self.queues is None or r[0] in self.queues]
            self._limited_at = time.monotonic()
        return self._limited

    async def _claim_limited(self, params: dict, lane: int) -> list[Attempt]:
        conn = await self._connection(lane)
        async with self._link.transaction_async(conn):
            # The row lock first, in its own statement: the claim that
            # follows then sees every claim committed before it.
            await conn.execute(self.q.lock_queue, params)
            cur = conn.cursor(row_factory=self._rows)
            await cur.execute(self.q.claim_limited, params)
            return await cur.fetchall()

    async def _connection(self, lane: int) -> psycopg.AsyncConnection:
        """A claimer lane's own connection (one round at a time on each).

        Its session forbids bitmap scans and sorts (CLAIM_SESSION_SETTINGS):
        without statistics (a queue filled faster than autovacuum analyses
        it) PostgreSQL would otherwise read and sort every waiting job for
        each claim."""
        conn = self.conns[lane]
        if conn is None or conn.broken or conn.closed:
            conn = self.conns[lane] = await self._link.connect_async(
                autocommit=True, application_name=application_name("claim", self.worker_id))
        return conn



def array_literal(values: Iterable[int | str]) -> str:
    """A round's job ids or lease tokens as one PostgreSQL array literal,
    sent as a text parameter that the statement casts (``::bigint[]``,
    ``::uuid[]``). psycopg's list dumper inspects every element of a list
    to choose its type, which cost about 10 µs per job of a round
    (docs/benchmarks.md, "Round two"); the join costs about 0.5. Only
    values that need no quoting may pass: ids are ints, and tokens are the
    canonical text of a uuid, read back from the database
    (``lease_token::text``)."""
    return "{" + ",".join(map(str, values)) + "}"


async def sleep(seconds: float, event: asyncio.Event | None = None) -> None:
    """Sleep, or less if ``event`` is set. (asyncio.timeout, not wait_for:
    wait_for wraps the wait in a task of its own, and each hop between
    tasks queues behind every job step already on the loop.)"""
    if event is None:
        await asyncio.sleep(seconds)
        return
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        pass
