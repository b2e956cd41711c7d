"""Tasks, and the context a running job sees."""

from __future__ import annotations

import inspect
import math
from collections.abc import Coroutine
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable, Protocol, TypeVar

import psycopg

from . import _writes_async, _writes_sync
from .errors import ConfigError
from .payloads import INT_MAX, SMALLINT, check_int, check_queue, check_text
from .retries import Retry, RetryPolicy, check

if TYPE_CHECKING:
    from .app import App, JobRef
    from .queries import Queries

T = TypeVar("T")
__all__ = ["Cancelled", "Context", "Discard", "JobRuntime", "LeaseLost", "Retry", "Task"]


class Discard(Exception):
    """Raise from a task to fail the job at once, without further attempts."""


class RetryIn(Exception):
    """Raise from a task to try the job again no sooner than ``seconds`` from
    now: a provider's Retry-After, a window that opens later. The attempt
    counts and is recorded as a failure with ``message``; when the task's
    retry policy asks for longer, the longer wait wins (retries.py decides)."""

    def __init__(self, seconds: float, message: str = "") -> None:
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not seconds >= 0:
            raise ValueError(f"RetryIn needs a number of seconds >= 0, not {seconds!r}")
        super().__init__(message or f"try again in {seconds:g}s")
        self.seconds = float(seconds)


class Cancelled(Exception):
    """Raise from a sync task that saw ``ctx.cancelled`` (``ctx.raise_if_cancelled()``
    does it): the attempt ends as cancelled. A task that returns has finished,
    and ends as succeeded whatever was asked meanwhile."""


class LeaseLost(Exception):
    """The attempt's lease token no longer matches: someone else owns the job."""


class Task:
    """A function registered with ``@app.task``; calling it runs it directly."""

    def __init__(
        self,
        app: App,
        fn: Callable[..., Any],
        *,
        name: str,
        queue: str,
        priority: int,
        max_attempts: int,
        timeout: float | None,
        transactional: bool,
        retry: RetryPolicy,
    ) -> None:
        check_text(name, "task name", max_bytes=200, exc=ConfigError)
        where = f"task {name!r}"
        check_queue(queue, exc=ConfigError)
        check_int(priority, f"{where}: priority", *SMALLINT, exc=ConfigError)
        check_int(max_attempts, f"{where}: max_attempts", 1, INT_MAX, exc=ConfigError)
        if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
                                    or not 0 < timeout < math.inf):
            raise ConfigError(f"{where}: timeout must be a positive number of seconds or None")
        check(retry, where)
        params = list(inspect.signature(fn).parameters)
        self.takes_ctx = bool(params) and params[0] == "ctx"
        if transactional and not self.takes_ctx:
            raise ConfigError(f"{where}: a transactional task needs `ctx` as its first parameter (ctx.conn is its transaction)")
        self.app = app
        self.fn = fn
        self.name = name
        self.queue = queue
        self.priority = priority
        self.max_attempts = max_attempts
        self.timeout = timeout
        self.transactional = transactional
        self.retry = retry
        self.is_async = inspect.iscoroutinefunction(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<Task {self.name} queue={self.queue}>"

    def enqueue(self, **kwargs: Any) -> JobRef:
        """Enqueue a job of this task with these keyword arguments."""
        return self.app.enqueue(self.name, kwargs)

    async def enqueue_async(self, **kwargs: Any) -> JobRef:
        """``enqueue`` for async code (does not block the event loop)."""
        return await self.app.enqueue_async(self.name, kwargs)

    def configure(
        self,
        *,
        key: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | timedelta | None = None,
        conn: Any = None,
    ) -> _Configured:
        """Options for one enqueue: ``task.configure(key="post:1").enqueue(post_id=1)``
        (or ``await ....enqueue_async(...)``, where ``conn`` may be an AsyncConnection)."""
        return _Configured(self, dict(key=key, queue=queue, priority=priority, run_at=run_at, conn=conn))


@dataclass(frozen=True)
class _Configured:
    task: Task
    options: dict[str, Any]

    def enqueue(self, **kwargs: Any) -> JobRef:
        return self.task.app.enqueue(self.task.name, kwargs, **self.options)

    async def enqueue_async(self, **kwargs: Any) -> JobRef:
        """With ``conn=`` an AsyncConnection (e.g. an async task's ctx.conn)."""
        return await self.task.app.enqueue_async(self.task.name, kwargs, **self.options)


class JobRuntime(Protocol):
    """What a running job's Context needs from the worker that runs it."""

    queries: Queries

    async def log_event(self, job: Context, message: str, data: dict) -> None: ...

    async def save_checkpoint(self, job: Context, value: Any) -> None: ...

    def run_sync(self, coro: Coroutine[Any, Any, T]) -> T:
        """From a task's thread: run ``coro`` on the worker's loop and wait."""
        ...

    def sync_connection(self) -> AbstractContextManager[psycopg.Connection]: ...

    def transaction(self, conn: psycopg.Connection) -> AbstractContextManager[psycopg.Transaction]:
        """``conn.transaction()`` with the worker's session settings (its leash) in force."""
        ...


class Context:
    """What a running job knows about itself; the ``ctx`` of a task.

    ``conn`` is set only for transactional tasks: it is the transaction that
    will also mark the job succeeded, so writes through it happen exactly once.
    ``cancelled`` turns true when someone cancels the job or its timeout
    passes: sync tasks should check it in long loops (``raise_if_cancelled()``),
    since Python cannot stop a thread from outside.

    Each call has an async and a sync form, and each always returns the same
    kind of thing: ``await ctx.alog(...)`` / ``await ctx.acheckpoint(...)`` in
    async tasks, ``ctx.log(...)`` / ``ctx.checkpoint(...)`` in sync ones (they
    wait for the write; calling them on the event loop is refused).
    """

    def __init__(self, *, id: int, attempt: int, key: str | None, args: dict, task: str, queue: str,
                 max_attempts: int, last_checkpoint: Any, runtime: JobRuntime, token: str) -> None:
        self.id = id
        self.attempt = attempt
        self.key = key
        self.args = args
        self.task = task
        self.queue = queue
        self.max_attempts = max_attempts
        self.last_checkpoint = last_checkpoint
        self.conn: Any = None
        self._runtime = runtime
        self._token = token
        # A plain flag: set from the event loop, read from the task's thread;
        # a bool assignment is atomic and a threading.Event per job costs more.
        self._cancelled = False

    @property
    def cancelled(self) -> bool:
        return self._cancelled

    def raise_if_cancelled(self) -> None:
        """Raise Cancelled if the job was cancelled (or timed out); for sync loops."""
        if self._cancelled:
            raise Cancelled()

    # -- history ------------------------------------------------------------

    async def alog(self, message: str, **data: Any) -> None:
        """Add a line to this job's history (async tasks)."""
        await self._runtime.log_event(self, str(message), data)

    def log(self, message: str, **data: Any) -> None:
        """Add a line to this job's history and wait for it (sync tasks)."""
        self._runtime.run_sync(self._runtime.log_event(self, str(message), data))

    # -- checkpoints --------------------------------------------------------

    async def acheckpoint(self, value: Any) -> None:
        """Store progress (JSON) for the next attempt to resume from (async tasks).
        The write presents this attempt's lease token; a stale attempt's is
        refused (LeaseLost). In a transactional task it goes through ctx.conn
        and commits with the task's writes."""
        if isinstance(self.conn, psycopg.AsyncConnection):
            if not await _writes_async.save_checkpoint(self.conn, self._runtime.queries, self.id, self._token, value):
                raise LeaseLost()
        elif self.conn is not None:
            raise ConfigError("this task's ctx.conn is a sync connection: use ctx.checkpoint(...)")
        else:
            await self._runtime.save_checkpoint(self, value)
        self.last_checkpoint = value

    def checkpoint(self, value: Any) -> None:
        """``acheckpoint`` for sync tasks: waits for the write."""
        if isinstance(self.conn, psycopg.Connection):
            self.checkpoint_in(self.conn, value)
            return
        if self.conn is not None:
            raise ConfigError("this task's ctx.conn is an async connection: use await ctx.acheckpoint(...)")
        self._runtime.run_sync(self._runtime.save_checkpoint(self, value))
        self.last_checkpoint = value

    def checkpoint_in(self, conn: psycopg.Connection, value: Any) -> None:
        """Write the checkpoint through ``conn``, so it commits (or rolls back)
        with the writes of that transaction; raises LeaseLost when this attempt
        no longer holds the job (the caller's transaction should roll back)."""
        if not _writes_sync.save_checkpoint(conn, self._runtime.queries, self.id, self._token, value):
            raise LeaseLost()
        self.last_checkpoint = value

    def connection(self) -> AbstractContextManager[psycopg.Connection]:
        """A pooled sync connection (autocommit) of the worker, for sync tasks.
        Open its transactions with ``ctx.transaction(conn)``."""
        return self._runtime.sync_connection()

    def transaction(self, conn: psycopg.Connection) -> AbstractContextManager[psycopg.Transaction]:
        """A transaction on ``conn`` (from ``ctx.connection()``) on the worker's leash: behind a
        transaction pooler its settings (``idle_in_transaction_session_timeout`` of one lease, ...)
        are SET LOCAL in it, so the server ends it if this worker is cut off mid-transaction."""
        return self._runtime.transaction(conn)

    def __repr__(self) -> str:
        return f"<Context job={self.id} task={self.task} attempt={self.attempt}>"
