"""The worker: claim → run → complete, with leases, heartbeats and shutdown.

One asyncio loop per process runs these small loops:

    listen     LISTEN on <schema>_jobs / <schema>_control; wakes the claimer,
               forwards cancellations (reconnects on its own when the server
               goes away)
    claim      on its own connection, one statement per round: marks the
               attempts that finished since the last round succeeded (each
               row fenced by its lease token) and claims up to the free slots
               (FOR UPDATE SKIP LOCKED); starts each job, then sleeps until a
               job finishes, a notification wakes it, or the poll interval
               passes (the fallback when a notification is lost). With short
               jobs a second lane, on a second connection, runs a round
               while the first one's is in flight
    heartbeat  renews the leases of every attempt this process holds; an
               attempt whose lease is gone is told to stop
    rescue     returns attempts whose lease expired (their worker died) to
               waiting, or fails them when no attempt is left

Sync task functions run in a thread pool; async ones on the loop. A
transactional task runs in a transaction that also marks the job succeeded
(complete_job_in_tx): if the lease was lost meanwhile, the whole transaction
rolls back, so its database effects happen exactly once.

Every write that fails because PostgreSQL is unreachable is retried with
backoff; nothing is lost by a restart of the server, because a job whose
outcome could not be written is still "running" with a lease that will expire
and be rescued.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import signal
import socket
import threading
import time
import traceback
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any, Coroutine

import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import database
from .app import App
from .errors import UnknownTask
from .maintenance import Leader, Maintenance, PartitionKeeper, Pruner, Rescuer, Scheduler
from .maintenance.scheduler import register as register_schedules
from .migrations import EVENT_DAYS_AHEAD, check_current
from .monitoring import logs
from .monitoring.counters import CounterPass
from .attempts import Attempt, LeaseLost, StopRequested, TimedOut, WorkerStats, bind, describe, within
from .claiming import ClaimRounds
from .tasks import Context, Discard, Task

log = logging.getLogger("pgsteady.worker")

class Worker(ClaimRounds):
    def __init__(
        self,
        app: App,
        *,
        queues: list[str] | None = None,
        concurrency: int = 10,
        lease: float = 30.0,
        poll_interval: float = 1.0,
        grace: float = 30.0,
        complete_batch: int = 500,
        rescue_interval: float | None = None,
        retention: dict[str, timedelta] | None = None,
        events_retention: timedelta = timedelta(days=14),
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if lease < 1:
            raise ValueError("lease must be at least 1 second")
        self.app = app
        self.q = app.queries
        self.queues = list(queues) if queues else None
        self.concurrency = concurrency
        self.lease = lease
        self.poll_interval = poll_interval
        self.grace = grace
        self.complete_batch = complete_batch
        self.rescue_interval = rescue_interval if rescue_interval is not None else max(lease / 3, 0.5)
        # Unique per process (and per Worker in a process), never just a host name.
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self.stats = WorkerStats()
        self._active: dict[int, Attempt] = {}
        self._ready: deque[Attempt] = deque()  # claimed, waiting for a free slot
        self._run_time = 1.0  # moving average of attempt run time, seconds
        self._capacity = concurrency  # slots plus the jobs claimed ahead (see _prefetch)
        self._done: list[Attempt] = []
        self._running = 0
        # One wake-up event per claim lane, so that a lane which looks and
        # finds nothing to do cannot swallow a wake-up meant for the other.
        self._wakes = (asyncio.Event(), asyncio.Event())
        self._stopping = asyncio.Event()
        self._pool: AsyncConnectionPool | None = None
        self._claim_conns: list[psycopg.AsyncConnection | None] = [None, None]  # one per lane
        self._inflight = 0  # slots reserved by rounds in flight
        self._idle = False  # until_idle: a lane found nothing left to do
        self._sync_pool: ConnectionPool | None = None
        self._threads = ThreadPoolExecutor(max_workers=concurrency + 4, thread_name_prefix="pgsteady-task")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signals = 0
        self._sync_lock = threading.Lock()
        self._limited: list[str] = []
        self._limited_at = 0.0
        self.maintenance = Maintenance(
            # Two thirds of a lease, renewed every sixth: a dead leader's duties
            # (rescue first) move within a lease of its last renewal.
            Leader(self.q, self.id, lease=lease * 2 / 3),
            [Rescuer(self.q, worker_id=self.id, release=app.release, interval=self.rescue_interval),
             Scheduler(self.q, worker_id=self.id, release=app.release),
             Pruner(self.q, retention=retention),
             PartitionKeeper(self.q, retention=events_retention),
             CounterPass(self.q)])

    # -- public -------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period to finish."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stopping.set)

    async def run(self, *, until_idle: bool = False, handle_signals: bool = False) -> WorkerStats:
        """Run until stop() (or a signal); with ``until_idle`` return once no
        job is claimable and none is running (handy for tests and scripts)."""
        self._loop = asyncio.get_running_loop()
        self._idle = False  # a Worker may run until idle again, for the jobs enqueued since
        dsn = self.app.dsn
        with database.connect(dsn, autocommit=True) as conn:
            check_current(conn, self.app.schema)
        self._pool = AsyncConnectionPool(dsn, min_size=2, max_size=self.concurrency + 4, open=False,
                                         kwargs={"autocommit": True}, name="pgsteady-worker")
        await self._pool.open(wait=True)
        await self._write(self.q.register_worker, dict(
            worker_id=self.id, host=socket.gethostname(), pid=os.getpid(), queues=self.queues,
            concurrency=self.concurrency, release=self.app.release))
        await self._write(self.q.ensure_event_partitions, dict(days_ahead=EVENT_DAYS_AHEAD))
        if self.app.schedules:
            async with self._pool.connection() as conn:
                await register_schedules(conn, self.q, list(self.app.schedules.values()), self.app.tasks)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._on_signal, sig)
        log.info("worker %s started: queues=%s concurrency=%d release=%s",
                 self.id, ",".join(self.queues or ["*"]), self.concurrency, self.app.release)
        helpers = [asyncio.create_task(coro) for coro in
                   (self._listen_loop(), self._heartbeat_loop(),
                    self.maintenance.run(self._pool))]
        try:
            await asyncio.gather(self._claim_loop(until_idle, 0), self._claim_loop(until_idle, 1))
            await self._shutdown()
        finally:
            for h in helpers:
                h.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self.maintenance.close()
            try:
                await self._write(self.q.unregister_worker, dict(worker_id=self.id), retry_for=2)
            except psycopg.Error:
                pass
            await self._pool.close()
            for conn in self._claim_conns:
                if conn is not None:
                    await conn.close()
            if self._sync_pool is not None:
                self._sync_pool.close()
            self._threads.shutdown(wait=False, cancel_futures=True)
            if handle_signals:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    self._loop.remove_signal_handler(sig)
        log.info("worker %s stopped: %s", self.id, self.stats)
        return self.stats

    def _on_signal(self, sig: int) -> None:
        self._signals += 1
        if self._signals == 1:
            log.warning("%s: finishing running jobs (up to %ss); send it again to stop at once",
                        signal.Signals(sig).name, self.grace)
            self._stopping.set()
        else:
            # Leases of what is still running expire and live workers rescue it.
            log.warning("second signal: stopping at once")
            os._exit(130)

    def _start_ready(self) -> None:
        while self._ready and self._running < self.concurrency and not self._stopping.is_set():
            att = self._ready.popleft()
            if att.lost:
                continue  # its lease went while it waited: another worker owns the job now
            self._running += 1
            att.runner = asyncio.create_task(self._run(att))

    # -- running ------------------------------------------------------------

    async def _run(self, att: Attempt) -> None:
        # Every log line written while this attempt runs carries its job id,
        # task, attempt and release (the context follows the asyncio task).
        started = time.monotonic()
        logs.enter_job(att.id, att.task_name, att.attempt, self.app.release)  # this task's own context
        await self._run_attempt(att)
        self._run_time = 0.9 * self._run_time + 0.1 * (time.monotonic() - started)

    async def _run_attempt(self, att: Attempt) -> None:
        try:
            if att.cancel_requested:  # cancelled while it waited for a slot
                await self._after_cancel(att)
                return
            try:
                task = self.app.get_task(att.task_name)
            except UnknownTask as exc:
                # Another release may know it; keep retrying with backoff.
                await self._fail(att, f"{exc} (this worker's App does not define it)", "", retry=True,
                                 backoff=min(60.0, 2.0 ** att.attempt))
                return
            try:
                if task.transactional:
                    await self._call_transactional(task, att)
                    self._forget(att)
                    self.stats.succeeded += 1
                else:
                    await self._call(task, att)
                    att.finished = True
                    self._done.append(att)  # the claimer's next round completes it
            except (asyncio.CancelledError, StopRequested):
                await self._after_cancel(att)
            except LeaseLost:
                await self._record_rejected(att, "completion rejected: this attempt no longer holds the lease")
            except TimedOut:
                await self._fail(att, f"timed out after {task.timeout}s", "", retry=True,
                                 backoff=task.backoff(att.attempt))
            except Discard as exc:
                await self._fail(att, describe(exc), traceback.format_exc(), retry=False)
            except Exception as exc:  # the task's own failure
                await self._fail(att, describe(exc), traceback.format_exc(), retry=True,
                                 backoff=task.backoff(att.attempt))
        finally:
            self._running -= 1
            self._start_ready()
            if self._claim_due():
                self._wake()

    async def _call(self, task: Task, att: Attempt) -> None:
        call = bind(task, att.ctx)
        if task.is_async:
            await within(task.timeout, call())
        else:
            await within(task.timeout, self._loop.run_in_executor(self._threads, logs.in_current_context(call)))
        if att.cancel_requested:
            raise StopRequested()

    async def _call_transactional(self, task: Task, att: Attempt) -> None:
        args = dict(id=att.id, token=att.token)
        if task.is_async:
            async with self._pool.connection() as conn:
                async with conn.transaction():
                    att.ctx.conn = conn
                    await within(task.timeout, bind(task, att.ctx)())
                    if att.cancel_requested:
                        raise StopRequested()  # rolls the task's writes back
                    att.finished = True
                    if (await (await conn.execute(self.q.complete_job_in_tx, args)).fetchone()) is None:
                        raise LeaseLost()
            return

        def run_in_thread() -> None:
            with self.sync_connection() as conn:
                with conn.transaction():
                    att.ctx.conn = conn
                    bind(task, att.ctx)()
                    if att.cancel_requested:
                        raise StopRequested()  # rolls the task's writes back
                    att.finished = True
                    if conn.execute(self.q.complete_job_in_tx, args).fetchone() is None:
                        raise LeaseLost()

        await within(task.timeout, self._loop.run_in_executor(self._threads, logs.in_current_context(run_in_thread)))

    async def _after_cancel(self, att: Attempt) -> None:
        if att.lost or self._stopping.is_set() and not att.cancel_requested:
            return  # lease gone, or shutting down: hand_back decides
        if att.cancel_requested:
            att.finished = True
            rows = await self._fetch(self.q.cancel_running_job, dict(
                id=att.id, token=att.token, worker_id=self.id, release=self.app.release))
            self._forget(att)
            if rows:
                self.stats.cancelled += 1
            return
        raise asyncio.CancelledError()

    async def _fail(self, att: Attempt, error: str, tb: str, *, retry: bool, backoff: float = 0.0) -> None:
        att.finished = True  # a terminal write is under way: the heartbeat must not call this lease lost
        rows = await self._fetch(self.q.fail_job, dict(
            id=att.id, token=att.token, retry=retry, backoff=timedelta(seconds=backoff), error=error,
            traceback=tb, worker_id=self.id, release=self.app.release), retry_for=self.lease)
        self._forget(att)
        if not rows:
            self.stats.rejected += 1
        elif rows[0][0] == "failed":
            self.stats.failed += 1
        else:
            self.stats.retried += 1
        log.info("job %s (%s) attempt %d failed: %s%s", att.id, att.task_name, att.attempt, error,
                 "" if not rows else f" -> {rows[0][0]}")

    async def _record_rejected(self, att: Attempt, message: str) -> None:
        self._forget(att)
        self.stats.rejected += 1
        await self._write(self.q.log_event, dict(job_id=att.id, attempt=att.attempt, worker_id=self.id,
                                                 release=self.app.release, kind="late_write_rejected",
                                                 message=message, data=None))

    def _forget(self, att: Attempt) -> None:
        att.finished = True
        self._active.pop(att.id, None)

    # -- heartbeat, cancellation and rescue -----------------------------------

    async def _heartbeat_loop(self) -> None:
        while True:
            await asyncio.sleep(self.lease / 3)
            held = [a for a in self._active.values() if not a.lost]
            try:
                rows = await self._fetch(self.q.heartbeat, dict(
                    worker_id=self.id, lease=timedelta(seconds=self.lease),
                    ids=[a.id for a in held], tokens=[a.token for a in held]))
            except psycopg.OperationalError as exc:
                log.warning("heartbeat failed (%s)", database.scrub(str(exc)).strip())
                continue
            renewed = {job_id: cancel for job_id, cancel in rows}
            lost = [a for a in held if a.id not in renewed and not a.finished]
            for a in lost:
                a.lost = True
                self._interrupt(a)
            if lost:
                log.warning("lost the lease of jobs %s; stopping them", [a.id for a in lost])
                await self._write(self.q.record_lost_leases, dict(
                    ids=[a.id for a in lost], worker_id=self.id, release=self.app.release))
                for a in lost:
                    self._active.pop(a.id, None)
            for job_id, cancel in renewed.items():
                if cancel:
                    self._cancel(job_id)

    def _cancel(self, job_id: int) -> None:
        att = self._active.get(job_id)
        if att is None or att.cancel_requested or att.finished:
            return
        att.cancel_requested = True
        self._interrupt(att)

    def _interrupt(self, att: Attempt) -> None:
        """Tell a running attempt to stop: sync tasks see ctx.cancelled, async
        ones are cancelled as well."""
        att.ctx._cancelled = True
        task = self.app.tasks.get(att.task_name)
        if att.runner is not None and task is not None and task.is_async:
            att.runner.cancel()

    async def _listen_loop(self) -> None:
        jobs_channel, control_channel = f"{self.app.schema}_jobs", f"{self.app.schema}_control"
        delay = 0.5
        while True:
            try:
                conn = await psycopg.AsyncConnection.connect(self.app.dsn, autocommit=True)
                async with conn:
                    for channel in (jobs_channel, control_channel):
                        await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                    self._wake()  # anything enqueued while we were not listening
                    delay = 0.5
                    async for note in conn.notifies():
                        if note.channel == jobs_channel:
                            if self.queues is None or note.payload in self.queues:
                                self._wake()
                        elif note.payload.isdigit():
                            self._cancel(int(note.payload))
                        elif note.payload == "queues":
                            self._limited_at = 0.0
                            self._wake()
            except psycopg.OperationalError as exc:
                log.warning("listen connection lost (%s); reconnecting", database.scrub(str(exc)).strip())
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- shutdown -----------------------------------------------------------

    async def _shutdown(self) -> None:
        running = [a.runner for a in self._active.values() if a.runner is not None and not a.runner.done()]
        if running:
            log.info("waiting up to %ss for %d running jobs", self.grace, len(running))
            await asyncio.wait(running, timeout=self.grace)
        deadline = time.monotonic() + self.lease
        while self._done:
            try:
                await self._claim(0)  # complete only
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    # Their leases expire and they run again elsewhere: at-least-once.
                    log.warning("could not record %d finished jobs (%s)", len(self._done),
                                database.scrub(str(exc)).strip())
                    break
                await self._sleep(1.0)
        unfinished = [a for a in self._active.values() if not a.finished and not a.lost]
        for a in unfinished:
            a.ctx._cancelled = True
            if a.runner is not None and not a.runner.done():
                a.runner.cancel()
        if unfinished:
            rows = await self._fetch(self.q.hand_back, dict(
                ids=[a.id for a in unfinished], tokens=[a.token for a in unfinished],
                worker_id=self.id, release=self.app.release), retry_for=self.lease)
            self.stats.handed_back += len(rows)
            log.info("handed back %d unfinished jobs without charging an attempt", len(rows))
        pending = [a.runner for a in unfinished if a.runner is not None]
        if pending:
            await asyncio.wait(pending, timeout=1.0)

    # -- database helpers -----------------------------------------------------

    async def _fetch(self, query: str, params: dict, *, retry_for: float = 0.0) -> list[tuple]:
        """Run a statement on a pooled connection; rows if it returns any.
        With ``retry_for`` a lost connection is retried with backoff for that
        many seconds (used for writes whose loss would cost a whole lease)."""
        deadline = time.monotonic() + retry_for
        delay = 0.2
        while True:
            try:
                async with self._pool.connection() as conn:
                    cur = await conn.execute(query, params)
                    return await cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _write(self, query: str, params: dict, *, retry_for: float = 5.0) -> None:
        await self._fetch(query, params, retry_for=retry_for)

    @staticmethod
    async def _sleep(seconds: float, event: asyncio.Event | None = None) -> None:
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

    # -- what Context calls ---------------------------------------------------

    @staticmethod
    def lease_lost() -> Exception:
        """The exception that makes the worker treat the attempt as superseded."""
        return LeaseLost()

    def sync_connection(self):
        """A pooled sync connection (autocommit) for code running in task threads."""
        with self._sync_lock:
            if self._sync_pool is None:
                self._sync_pool = ConnectionPool(self.app.dsn, min_size=1, max_size=self.concurrency, open=True,
                                                 kwargs={"autocommit": True}, name="pgsteady-sync-tasks")
        return self._sync_pool.connection()

    def submit(self, coro: Coroutine) -> asyncio.Future | None:
        """Run a coroutine on the worker's loop: from the loop, return it as a
        task; from a task thread, wait for it."""
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            return asyncio.ensure_future(coro)
        asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        return None

    async def log_event(self, ctx: Context, message: str, data: dict) -> None:
        await self._write(self.q.log_event, dict(job_id=ctx.id, attempt=ctx.attempt, worker_id=self.id,
                                                 release=self.app.release, kind="log", message=message,
                                                 data=Jsonb(data) if data else None))

    def checkpoint_in_tx(self, ctx: Context, value: Any) -> Any:
        """A transactional task's checkpoint: written through ctx.conn, so it
        commits (or rolls back) with the task's own writes."""
        params = dict(id=ctx.id, token=ctx._token, value=Jsonb(value))
        if isinstance(ctx.conn, psycopg.AsyncConnection):
            async def write() -> None:
                if not await (await ctx.conn.execute(self.q.save_checkpoint, params)).fetchall():
                    raise LeaseLost()
            return write()
        if not ctx.conn.execute(self.q.save_checkpoint, params).fetchall():
            raise LeaseLost()
        return None

    async def save_checkpoint(self, ctx: Context, value: Any) -> None:
        rows = await self._fetch(self.q.save_checkpoint, dict(id=ctx.id, token=ctx._token, value=Jsonb(value)),
                                 retry_for=self.lease)
        if not rows:
            await self._write(self.q.log_event, dict(job_id=ctx.id, attempt=ctx.attempt, worker_id=self.id,
                                                     release=self.app.release, kind="late_write_rejected",
                                                     message="checkpoint rejected: this attempt no longer holds the lease",
                                                     data=None))
            raise LeaseLost()


def run_worker(app: App, **options: Any) -> WorkerStats:
    """Run a worker in this thread until it is stopped (sync convenience)."""
    until_idle = options.pop("until_idle", False)
    handle_signals = options.pop("handle_signals", threading.current_thread() is threading.main_thread())
    return asyncio.run(Worker(app, **options).run(until_idle=until_idle, handle_signals=handle_signals))
