"""Running attempts: one attempt's state, and the Runner that calls task functions.

The Runner owns the slots (how many attempts run), the thread pool of sync
tasks and their connection pool. It calls the task and turns what happened
into one call on the Completer (completing.py): succeeded, failed, cancelled,
rejected. It is also the ``JobRuntime`` a job's Context talks to.

Timeouts. An async task past its timeout is cancelled. A sync one cannot be
stopped from outside, so its ``ctx.cancelled`` turns true and the attempt
keeps its slot and its lease (the heartbeat still renews it) until the
thread returns; only then is the timeout recorded and the retry scheduled,
so two attempts of one job never overlap.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
import traceback
import types
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import psycopg
from psycopg_pool import ConnectionPool

from .monitoring import logs
from .tasks import Cancelled, Context, Discard, LeaseLost, Task
from .topology import Link, application_name

if TYPE_CHECKING:
    from .app import App
    from .completing import Completer, Db

log = logging.getLogger("pgsteady.worker")
T = TypeVar("T")

# A slot task gives the loop a turn after this many attempts that ended in
# their first step, so that a claimer lane woken meanwhile sends its round
# while the worker runs the rest (rounds and jobs overlap, as they did when
# every attempt was a task of its own).
SLOT_BURST = 20


class TimedOut(Exception):
    """The task ran past its timeout (kept apart from a TimeoutError the task raises itself)."""


@dataclass(slots=True)
class Attempt:
    id: int
    token: str
    attempt: int
    task_name: str
    ctx: Context
    runner: asyncio.Task | None = None
    cancel_requested: bool = False  # confirmed by the job's row, never by a notification alone
    lost: bool = False
    finished: bool = False


@dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    retried: int = 0
    rejected: int = 0
    rescued: int = 0
    handed_back: int = 0
    cancelled: int = 0
    started_at: float = field(default_factory=time.monotonic)


async def within(seconds: float | None, awaitable: Any) -> Any:
    """Await with an optional timeout; a timeout raises TimedOut."""
    if seconds is None:
        return await awaitable
    scope = asyncio.timeout(seconds)
    try:
        async with scope:
            return await awaitable
    except TimeoutError:
        if scope.expired():
            raise TimedOut() from None
        raise


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], step: Any, context: contextvars.Context) -> Generator[Any, Any, Any]:
    """Go on running ``coro``, which was started by hand (``context.run(coro.send, None)``)
    and gave ``step`` (the future it awaits) as its first step: what
    ``await coro`` does, from the second step on, every step in the
    attempt's own ``context``. The enclosing task hands every value and
    exception on to ``coro``."""
    while True:
        try:
            value = yield step
        except GeneratorExit:
            context.run(coro.close)
            raise
        except BaseException as exc:
            try:
                step = context.run(coro.throw, exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                step = context.run(coro.send, value)
            except StopIteration as stop:
                return stop.value


def bind(task: Task, ctx: Context) -> Callable[[], Any]:
    """A zero-argument callable that runs the task with the job's arguments."""
    if task.takes_ctx:
        return lambda: task.fn(ctx, **ctx.args)
    return lambda: task.fn(**ctx.args)


class Runner:
    """Runs attempts in the worker's slots; see the module's docstring."""

    def __init__(self, app: App, completer: Completer, db: Db, stopping: asyncio.Event, *, concurrency: int) -> None:
        self.app = app
        self.queries = app.queries
        self.completer = completer
        self.db = db
        self.stopping = stopping
        self.concurrency = concurrency
        self.running = 0
        self.run_time = 1.0  # moving average of attempt run time, seconds
        self.on_finished: Callable[[], None] = lambda: None  # the claimer fills the freed slot
        self.loop: asyncio.AbstractEventLoop | None = None
        self.threads = ThreadPoolExecutor(max_workers=concurrency + 4, thread_name_prefix="pgsteady-task")
        self._sync_pool: ConnectionPool | None = None
        self.link: Link | None = None  # how sessions reach the server; given by open_sync_pool
        self._pending: deque[Attempt] = deque()  # given a slot, not begun yet
        self._taking = False  # a slot task is taking from _pending
        self._slot_tasks: set[asyncio.Task] = set()
        # What every attempt's context is copied from: the worker's own, never
        # a job's (a slot task may be started from a job's context, when its
        # end lets the claimer hand out the next attempts).
        self._context = contextvars.copy_context()

    def start(self, att: Attempt) -> None:
        """Give ``att`` a slot; a slot task runs it soon (see _slot_task)."""
        self.running += 1
        self._pending.append(att)
        if not self._taking:
            self._new_slot_task()

    def _new_slot_task(self) -> None:
        self._taking = True
        task = asyncio.get_running_loop().create_task(self._slot_task(), context=self._context.copy())
        self._slot_tasks.add(task)  # the loop keeps only a weak reference
        task.add_done_callback(self._slot_tasks.discard)

    async def _slot_task(self) -> None:
        """Run the attempts given a slot, one after the other, while each
        ends without awaiting anything (a no-op job ends in its first step):
        no asyncio task and no hop through the loop per job. When one
        awaits, the rest go to a new slot task and this one stays with it,
        so every attempt that awaits runs in one task for its whole life
        (its timeout, cancellation and log fields are that task's); when it
        ends, this task takes the next ones, unless another is taking them.
        A task that was cancelled (interrupt) ends with its attempt.

        Each attempt runs every step in a context of its own (a copy of
        the worker's, as an asyncio task would get), so its log fields
        and any context variable its task function sets end with it and
        are never seen by the next job of that slot task."""
        me = asyncio.current_task()
        pending = self._pending
        ran = 0
        while pending:
            ran += 1
            if ran % SLOT_BURST == 0:
                await asyncio.sleep(0)  # let the claimer send its round while the rest wait their turn
                if not pending:
                    break
            att = pending.popleft()
            if att.lost:  # its lease went before it began: another worker owns the job now
                self.running -= 1
                self.on_finished()
                continue
            att.runner = me
            coro = self._run(att)
            context = self._context.copy()
            try:
                step = context.run(coro.send, None)
            except StopIteration:
                att.runner = None
                continue
            except asyncio.CancelledError:  # raised by the job itself; its own task would have ended with it
                att.runner = None
                continue
            self._taking = False
            if pending:
                self._new_slot_task()
            try:
                await _resume(coro, step, context)
            except asyncio.CancelledError:
                return
            finally:
                att.runner = None
            if me.cancelling() or self._taking:
                return
            self._taking = True
        self._taking = False

    async def _run(self, att: Attempt) -> None:
        # Every log line written while this attempt runs carries its job id,
        # task, attempt and release (the context follows the asyncio task).
        started = time.monotonic()
        logs.enter_job(att.id, att.task_name, att.attempt, self.app.release)  # this attempt's own context (_slot_task)
        try:
            await self._attempt(att)
        except psycopg.OperationalError as exc:
            # Its outcome could not be written for a whole lease (the database
            # is away): no more heartbeats for it, so rescue runs it again.
            log.error("job %s: its outcome could not be written (%s); it is no longer heartbeated, "
                      "and rescue runs it again once its lease expires", att.id, type(exc).__name__)
            self.completer.forget(att)
        except Exception:  # a bug here must not keep the lease forever: let it expire and be rescued
            log.exception("job %s: the worker could not record this attempt; its lease will expire", att.id)
            self.completer.forget(att)
        finally:
            self.running -= 1
            self.run_time = 0.9 * self.run_time + 0.1 * (time.monotonic() - started)
            self.on_finished()

    async def _attempt(self, att: Attempt) -> None:
        c = self.completer
        if att.cancel_requested:  # cancelled while it waited for a slot
            await c.cancelled(att)
            return
        task = self.app.tasks.get(att.task_name)
        if task is None:
            # Another release may know it; keep retrying with backoff.
            await c.failed(att, f"unknown task {att.task_name!r} (this worker's App does not define it)", "",
                           retry=True)
            return
        try:
            if task.transactional:
                await self._call_transactional(task, att)
                c.succeeded_in_tx(att)
            else:
                await self._call(task, att)
                c.succeeded(att)  # the claimer's next round records it
        except (asyncio.CancelledError, Cancelled) as exc:
            if att.cancel_requested:
                await c.cancelled(att)
            elif att.lost or self.stopping.is_set():
                return  # lease gone, or shutting down: hand_back decides
            elif isinstance(exc, Cancelled):
                await c.failed(att, "raised Cancelled, but nobody cancelled the job", traceback.format_exc(),
                               retry=True)
            else:
                raise
        except LeaseLost:
            await c.rejected(att, "completion rejected: this attempt no longer holds the lease")
        except TimedOut:
            await c.failed(att, f"timed out after {task.timeout}s", "", retry=True)
        except Exception as exc:  # the task's own failure (Discard: no retry)
            if att.cancel_requested:
                await c.cancelled(att)  # it stopped because it was asked to, in whatever way
            else:
                await c.failed(att, exc, None, retry=not isinstance(exc, Discard))

    async def _call(self, task: Task, att: Attempt) -> None:
        call = bind(task, att.ctx)
        if task.is_async:
            if task.timeout is None:
                await call()
            else:
                await within(task.timeout, call())
        else:
            await self._in_thread(task, att, logs.in_current_context(call))

    async def _call_transactional(self, task: Task, att: Attempt) -> None:
        if task.is_async:
            async with self.db.pool.connection() as conn:
                async with self.link.transaction_async(conn):  # on the worker's leash, whatever the pooler
                    att.ctx.conn = conn
                    await within(task.timeout, bind(task, att.ctx)())
                    att.finished = True
                    if not await self.completer.complete_in_tx(conn, att):
                        raise LeaseLost()
            return

        def run_in_thread() -> None:
            with self.sync_connection() as conn:
                with self.link.transaction(conn):
                    att.ctx.conn = conn
                    bind(task, att.ctx)()
                    att.finished = True
                    if not self.completer.complete_in_tx_sync(conn, att):
                        raise LeaseLost()

        await self._in_thread(task, att, logs.in_current_context(run_in_thread))

    async def _in_thread(self, task: Task, att: Attempt, fn: Callable[[], Any]) -> None:
        fut = self.loop.run_in_executor(self.threads, fn)
        if task.timeout is None:
            await fut
            return
        done, _ = await asyncio.wait((fut,), timeout=task.timeout)
        if done:
            fut.result()
            return
        # The thread cannot be stopped: tell it, and hold the slot and the
        # lease until it returns, so the retry cannot overlap it.
        att.ctx._cancelled = True
        log.warning("job %s ran past its timeout of %ss; waiting for its thread to return "
                    "(sync tasks should check ctx.cancelled)", att.id, task.timeout)
        try:
            await fut
        except Exception:
            att.finished = False  # a transactional body may have set it before rolling back
            raise TimedOut() from None
        if task.transactional:
            # Its transaction committed, the job's success with it: that stands.
            log.warning("job %s finished after its timeout; its transaction had committed", att.id)
            return
        raise TimedOut()

    def interrupt(self, att: Attempt) -> None:
        """Tell a running attempt to stop: sync tasks see ctx.cancelled, async
        ones are cancelled as well."""
        att.ctx._cancelled = True
        task = self.app.tasks.get(att.task_name)
        if att.runner is not None and task is not None and task.is_async:
            att.runner.cancel()

    # -- the JobRuntime of every Context ------------------------------------

    async def log_event(self, job: Context, message: str, data: dict) -> None:
        await self.completer.log_line(job, message, data)

    async def save_checkpoint(self, job: Context, value: Any) -> None:
        await self.completer.save_checkpoint(job, value)

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        coro.close()
        raise RuntimeError("this is the sync form, called on the event loop: in async code await "
                           "ctx.alog(...) / ctx.acheckpoint(...)")

    def sync_connection(self):
        """A pooled sync connection (autocommit) for code running in task threads."""
        if self._sync_pool is None:
            # Created on the loop's thread only (see Worker.run), so no lock is needed.
            raise RuntimeError("the worker is not running")
        return self._sync_pool.connection()

    def transaction(self, conn: psycopg.Connection):
        """A task's own transaction on a connection of this worker, on the worker's leash."""
        if self.link is None:
            raise RuntimeError("the worker is not running")
        return self.link.transaction(conn)

    def open_sync_pool(self, link: Link, worker_id: str) -> None:
        self.link = link
        self._sync_pool = ConnectionPool(self.app.dsn, min_size=0, max_size=self.concurrency, open=True,
                                         name="pgsteady-sync-tasks", **link.pool_kwargs(
                                             sync=True, timeout=link.leash,
                                             application_name=application_name("tasks", worker_id)))

    def close(self) -> None:
        if self._sync_pool is not None:
            self._sync_pool.close()
            self._sync_pool = None
        self.threads.shutdown(wait=False, cancel_futures=True)
