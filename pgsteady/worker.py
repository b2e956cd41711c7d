"""The worker: claim → run → complete, with leases, heartbeats and shutdown.

A Worker is four parts on one asyncio loop, each with one job:

    Claimer    (claiming.py)   the claim lanes, their connections and the jobs
                               claimed ahead: one statement per round records
                               the successes and claims up to the free slots
                               (FOR UPDATE SKIP LOCKED), then sleeps until a job
                               finishes, a notification wakes it or the poll
                               interval passes
    Runner     (attempts.py)   the slots: calls each task (sync ones in a thread
                               pool) and hands the outcome to the Completer
    Completer  (completing.py) the attempts held until their outcome is written:
                               failures, cancellations, rejected late writes
    listen     (notifications.py) LISTEN; a notification only wakes a part up

and, here, the heartbeat (renews every lease this process holds; an attempt
whose lease is gone is told to stop) and the maintenance duties of the
elected leader (maintenance/).

A transactional task runs in a transaction that also marks the job succeeded
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
import math
import os
import secrets
import signal
import socket
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

from . import database, notifications, topology
from .app import App
from .attempts import Attempt, Runner, WorkerStats
from .claiming import Claimer, sleep
from .completing import Completer, Db
from .errors import ConfigError, check_options
from .maintenance import Leader, Maintenance, PartitionKeeper, Pruner, Rescuer, Scheduler
from .maintenance.scheduler import register as register_schedules
from .migrations import EVENT_DAYS_AHEAD, check_current
from .monitoring.counters import CounterPass
from .payloads import check_queue

log = logging.getLogger("pgsteady.worker")
OPTIONS = ("queues", "concurrency", "lease", "poll_interval", "grace", "complete_batch", "rescue_interval",
           "retention", "events_retention", "listen_dsn")


def _number(value: Any, label: str, *, low: float, inclusive: bool = True) -> float:
    ok = (not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
          and (value >= low if inclusive else value > low))
    if not ok:
        raise ConfigError(f"{label} must be a number {'>=' if inclusive else '>'} {low:g}, not {value!r}")
    return float(value)


class Worker:
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
        listen_dsn: str | None = None,
        **unknown: Any,
    ) -> None:
        check_options(unknown, OPTIONS, "Worker")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or not 1 <= concurrency <= 10_000:
            raise ConfigError(f"concurrency must be an integer between 1 and 10000, not {concurrency!r}")
        if isinstance(complete_batch, bool) or not isinstance(complete_batch, int) or complete_batch < 1:
            raise ConfigError(f"complete_batch must be an integer >= 1, not {complete_batch!r}")
        if queues is not None and (isinstance(queues, str) or not queues):
            raise ConfigError("queues must be a non-empty list of queue names (or None for every queue)")
        if not isinstance(events_retention, timedelta) or events_retention < timedelta(days=1):
            raise ConfigError("events_retention must be a datetime.timedelta of at least one day")
        self.app = app
        self.q = app.queries
        self.queues = [check_queue(name, exc=ConfigError) for name in queues] if queues else None
        self.concurrency = concurrency
        self.lease = _number(lease, "lease (seconds)", low=1)
        self.poll_interval = _number(poll_interval, "poll_interval (seconds)", low=0, inclusive=False)
        self.grace = _number(grace, "grace (seconds)", low=0)
        self.complete_batch = complete_batch
        self.rescue_interval = (max(self.lease / 3, 0.5) if rescue_interval is None
                                else _number(rescue_interval, "rescue_interval (seconds)", low=0, inclusive=False))
        # Unique per process (and per Worker in a process), never just a host name.
        self.id = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        # LISTEN needs a real session: behind a transaction pooler, a direct DSN (docs/deployment.md).
        self.listen_dsn = database.validate_dsn(listen_dsn) if listen_dsn else None
        self.link: topology.Link | None = None  # how its sessions reach the server; set in run()
        self.stats = WorkerStats()
        self.stopping = asyncio.Event()
        self.db = Db()
        self.completer = Completer(self.db, self.q, self.stats, app.retries, worker_id=self.id,
                                   release=app.release, lease=self.lease)
        self.runner = Runner(app, self.completer, self.db, self.stopping, concurrency=concurrency)
        self.claimer = Claimer(app, self.runner, self.completer, self.db, self.stats, worker_id=self.id,
                               queues=self.queues, concurrency=concurrency, lease=self.lease,
                               poll_interval=self.poll_interval, complete_batch=complete_batch,
                               stopping=self.stopping)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._signals = 0
        self._cancel_checks: set[int] = set()
        self._checking: set[asyncio.Future] = set()
        self.maintenance = Maintenance(
            # Two thirds of a lease, renewed every sixth: a dead leader's duties
            # (rescue first) move within a lease of its last renewal.
            Leader(self.q, self.id, lease=self.lease * 2 / 3),
            [Rescuer(self.q, app.retries, worker_id=self.id, release=app.release, interval=self.rescue_interval),
             Scheduler(self.q, worker_id=self.id, release=app.release),
             Pruner(self.q, retention=retention),
             PartitionKeeper(self.q, retention=events_retention),
             CounterPass(self.q)])

    # -- public -------------------------------------------------------------

    def stop(self) -> None:
        """Stop claiming; running jobs get the grace period to finish."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._stop_claiming)

    def _stop_claiming(self) -> None:
        self.stopping.set()
        self.claimer.wake()  # a lane asleep for a long --poll must see it now

    async def run(self, *, until_idle: bool = False, handle_signals: bool = False) -> WorkerStats:
        """Run until stop() (or a signal); with ``until_idle`` return once no
        job is claimable and none is running (handy for tests and scripts)."""
        self._loop = self.runner.loop = asyncio.get_running_loop()
        dsn = self.app.dsn
        with database.connect(dsn, autocommit=True) as conn:
            check_current(conn, self.app.schema)
        link = self.link = topology.worker_link(dsn, self.app.pooler, self.lease)
        pool = self.db.pool = AsyncConnectionPool(
            dsn, min_size=2, max_size=self.concurrency + 4, open=False, name="pgsteady-worker",
            **link.pool_kwargs(timeout=self.lease, application_name=topology.application_name("pool", self.id)))
        await pool.open(wait=True)
        self.runner.open_sync_pool(link, self.id)
        self.claimer.use_link(link)
        await self.db.write(self.q.register_worker, dict(
            worker_id=self.id, host=socket.gethostname(), pid=os.getpid(), queues=self.queues,
            concurrency=self.concurrency, release=self.app.release))
        await self.db.write(self.q.ensure_event_partitions, dict(days_ahead=EVENT_DAYS_AHEAD))
        if self.app.schedules:
            async with pool.connection() as conn:
                await register_schedules(conn, self.q, list(self.app.schedules.values()), self.app.tasks)
        if handle_signals:
            for sig in (signal.SIGTERM, signal.SIGINT):
                self._loop.add_signal_handler(sig, self._on_signal, sig)
        log.info("worker %s started: queues=%s concurrency=%d release=%s",
                 self.id, ",".join(self.queues or ["*"]), self.concurrency, self.app.release)
        helpers = [asyncio.create_task(coro) for coro in
                   (self._listen(), self._heartbeat_loop(),
                    self.maintenance.run(pool))]
        try:
            await self.claimer.run(until_idle)
            await self._shutdown()
        finally:
            for h in helpers:
                h.cancel()
            await asyncio.gather(*helpers, return_exceptions=True)
            await self.maintenance.close()
            try:
                await self.db.write(self.q.unregister_worker, dict(worker_id=self.id), retry_for=2)
            except psycopg.Error:
                pass
            await pool.close()
            await self.claimer.close()
            self.runner.close()
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
            self._stop_claiming()
        else:
            # Leases of what is still running expire and live workers rescue it.
            log.warning("second signal: stopping at once")
            os._exit(130)

    # -- notifications, heartbeat and cancellation ---------------------------

    async def _listen(self) -> None:
        if self.listen_dsn is None and self.link.per_transaction:
            log.warning("a transaction pooler is in front of %s, and LISTEN cannot work through it: "
                        "set listen_dsn (--listen-dsn, PGSTEADY_LISTEN_DSN) to a direct DSN; "
                        "polling every %ss meanwhile", database.describe(self.app.dsn), self.poll_interval)
            return
        listen_link = topology.Link(self.listen_dsn or self.app.dsn, leash=self.lease)

        async def probe(message: notifications.Message) -> None:  # sent the way enqueue's notifications go
            await self.db.write(self.q.notify, notifications.encode(self.app.schema, message), retry_for=0)

        await notifications.listen(
            lambda: listen_link.connect_async(autocommit=True, application_name=topology.application_name(
                "listen", self.id)),
            self.app.schema, self._notified, probe=probe, poll_interval=self.poll_interval)

    def _notified(self, message: notifications.Message | None) -> None:
        if message is None or isinstance(message, notifications.JobsAvailable) and (
                self.queues is None or message.queue in self.queues):
            self.claimer.wake()
        elif isinstance(message, notifications.QueuesChanged):
            self.claimer.queues_changed()
        elif isinstance(message, notifications.CancelRequested):
            # Only a hint: the job's row decides (anyone can NOTIFY). Hints
            # that come together are checked in one statement.
            if message.job_id in self.completer.active:
                if not self._cancel_checks:
                    asyncio.get_running_loop().call_later(0.05, self._check_cancels_soon)
                self._cancel_checks.add(message.job_id)

    def _check_cancels_soon(self) -> None:
        ids, self._cancel_checks = self._cancel_checks, set()
        held = [a for i in ids if (a := self.completer.active.get(i)) is not None and not a.finished]
        if held:
            check = asyncio.ensure_future(self._check_cancels(held))
            self._checking.add(check)
            check.add_done_callback(self._checking.discard)

    async def _check_cancels(self, held: list[Attempt]) -> None:
        try:
            rows = await self.db.fetch(self.q.cancel_requests, dict(
                ids=[a.id for a in held], tokens=[a.token for a in held]))
        except psycopg.OperationalError:
            return  # the heartbeat reads the same rows
        for (job_id,) in rows:
            self._cancel(job_id)

    async def _heartbeat_loop(self) -> None:
        active = self.completer.active
        while True:
            await asyncio.sleep(self.lease / 3)
            held = [a for a in active.values() if not a.lost]
            try:
                rows = await self.db.fetch(self.q.heartbeat, dict(
                    worker_id=self.id, lease=timedelta(seconds=self.lease),
                    ids=[a.id for a in held], tokens=[a.token for a in held]))
            except psycopg.OperationalError as exc:
                log.warning("heartbeat failed (%s)", database.scrub(str(exc)).strip())
                continue
            renewed = {job_id: cancel for job_id, cancel in rows}
            lost = [a for a in held if a.id not in renewed and not a.finished]
            for a in lost:
                a.lost = True
                self.runner.interrupt(a)
            if lost:
                log.warning("lost the lease of jobs %s; stopping them", [a.id for a in lost])
                await self.completer.lost(lost)
            for job_id, cancel in renewed.items():
                if cancel:
                    self._cancel(job_id)

    def _cancel(self, job_id: int) -> None:
        """The job's row says cancel_requested: stop its attempt."""
        att = self.completer.active.get(job_id)
        if att is None or att.cancel_requested or att.finished:
            return
        att.cancel_requested = True
        self.runner.interrupt(att)

    # -- shutdown -----------------------------------------------------------

    async def _shutdown(self) -> None:
        active = self.completer.active
        running = [a.runner for a in active.values() if a.runner is not None and not a.runner.done()]
        if running:
            log.info("waiting up to %ss for %d running jobs", self.grace, len(running))
            await asyncio.wait(running, timeout=self.grace)
        deadline = time.monotonic() + self.lease
        while self.completer.done:
            try:
                await self.claimer.complete_only()
            except psycopg.OperationalError as exc:
                if time.monotonic() > deadline:
                    # Their leases expire and they run again elsewhere: at-least-once.
                    log.warning("could not record %d finished jobs (%s)", len(self.completer.done),
                                database.scrub(str(exc)).strip())
                    break
                await sleep(1.0)
        unfinished = [a for a in active.values() if not a.finished and not a.lost]
        for a in unfinished:
            a.ctx._cancelled = True
            if a.runner is not None and not a.runner.done():
                a.runner.cancel()
        if unfinished:
            rows = await self.db.fetch(self.q.hand_back, dict(
                ids=[a.id for a in unfinished], tokens=[a.token for a in unfinished],
                worker_id=self.id, release=self.app.release), retry_for=self.lease)
            self.stats.handed_back += len(rows)
            log.info("handed back %d unfinished jobs without charging an attempt", len(rows))
        pending = [a.runner for a in unfinished if a.runner is not None]
        if pending:
            await asyncio.wait(pending, timeout=1.0)


def run_worker(app: App, **options: Any) -> WorkerStats:
    """Run a worker in this thread until it is stopped (sync convenience)."""
    until_idle = options.pop("until_idle", False)
    handle_signals = options.pop("handle_signals", threading.current_thread() is threading.main_thread())
    return asyncio.run(Worker(app, **options).run(until_idle=until_idle, handle_signals=handle_signals))
