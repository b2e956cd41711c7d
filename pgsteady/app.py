"""App: configuration, the task registry and the enqueue API."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import weakref
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from . import _writes_async, _writes_sync, database, queues
from .errors import ConfigError, UnknownTask, check_options, did_you_mean
from .jobs import user_at_host
from .payloads import JobRef, check_int, job_row
from .queries import Queries, for_schema, validate_schema
from .retries import DEFAULT, Retries, RetryPolicy
from .schedules import Schedule
from .security.settings import MAX_PAYLOAD_BYTES
from .tasks import Task
from .topology import Link, pooler_setting

log = logging.getLogger("pgsteady")
DEFAULT_KEY_RETENTION = timedelta(hours=24)
TASK_OPTIONS = ("queue", "priority", "max_attempts", "timeout", "transactional", "retry")
__all__ = ["App", "JobRef"]


class App:
    """The entry point: tasks are registered on it and jobs enqueued through it.

    ``dsn`` defaults to PGSTEADY_DSN, else the embedded PostgreSQL. ``release``
    (default PGSTEADY_RELEASE) is recorded with every attempt, so monitoring
    can compare releases. ``pooler`` (default PGSTEADY_POOLER, else detected)
    says what stands in front of the server: none, session or transaction
    (docs/deployment.md).
    """

    def __init__(
        self,
        dsn: str | None = None,
        schema: str = "pgsteady",
        release: str | None = None,
        *,
        max_payload_bytes: int = MAX_PAYLOAD_BYTES,
        key_retention: timedelta = DEFAULT_KEY_RETENTION,
        pooler: str | None = None,
    ) -> None:
        check_int(max_payload_bytes, "max_payload_bytes", 2, 2**30, exc=ConfigError)
        if not isinstance(key_retention, timedelta) or key_retention < timedelta(0):
            raise ConfigError("key_retention must be a non-negative datetime.timedelta")
        self._dsn = database.validate_dsn(dsn) if dsn else None
        self.schema = validate_schema(schema)
        # What stands in front of the server (topology.py): auto, none, session or transaction.
        self.pooler = pooler_setting(pooler)
        self.release = release or os.environ.get("PGSTEADY_RELEASE") or None
        self.max_payload_bytes = max_payload_bytes
        self.key_retention = key_retention
        self.tasks: dict[str, Task] = {}
        self.schedules: dict[str, Schedule] = {}
        self.retries = Retries(self.tasks)  # the one retry policy of every job of this App
        self._pool: ConnectionPool | None = None
        self._async_pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, AsyncConnectionPool] = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._warned_loop = False

    # -- configuration ------------------------------------------------------

    def configure(self, *, dsn: str | None = None, schema: str | None = None) -> None:
        """Override the DSN or schema (the command line's --dsn / --schema)."""
        if dsn:
            self._dsn = database.validate_dsn(dsn)
        if schema:
            self.schema = validate_schema(schema)

    @property
    def dsn(self) -> str:
        """The DSN in use; starts the embedded server if none is configured."""
        if self._dsn is None:
            self._dsn = database.resolve_dsn(None)
        return self._dsn

    @property
    def queries(self) -> Queries:
        return for_schema(self.schema)

    def task(
        self,
        fn: Callable[..., Any] | None = None,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        max_attempts: int = 20,
        timeout: float | None = None,
        transactional: bool = False,
        retry: RetryPolicy = DEFAULT,
    ) -> Any:
        """Register a task: ``@app.task`` or ``@app.task(queue="mail", ...)``."""

        def register(f: Callable[..., Any]) -> Task:
            task_name = name or f"{f.__module__}.{f.__qualname__}"
            if task_name in self.tasks:
                raise ConfigError(f"two tasks are named {task_name!r}; give one of them name=...")
            t = Task(self, f, name=task_name, queue=queue, priority=priority, max_attempts=max_attempts,
                     timeout=timeout, transactional=transactional, retry=retry)
            self.tasks[task_name] = t
            return t

        return register(fn) if fn is not None else register

    def periodic(
        self,
        cron: str,
        *,
        name: str | None = None,
        tz: str = "UTC",
        args: Mapping[str, Any] | None = None,
        on_missed: str = "once",
        max_waiting: int | None = 1,
        **task_options: Any,
    ) -> Callable[[Callable[..., Any] | Task], Task]:
        """Run a task on a cron schedule: ``@app.periodic("0 3 * * *", tz="Europe/Paris")``.

        Stack it on a function (it becomes a task; ``task_options`` are those of
        ``app.task``) or on an existing task. Each scheduled time is enqueued
        exactly once however many workers run; ``on_missed`` (skip, once, all)
        says what happens to times missed while no worker ran, and to runs
        that were enqueued but never picked up: at most ``max_waiting`` runs
        of a schedule wait unclaimed at once (None: no limit), so a queue no
        worker serves does not pile up a backlog that later runs as a burst.
        """

        check_options(task_options, TASK_OPTIONS, "periodic")

        def register(f: Callable[..., Any] | Task) -> Task:
            task = f if isinstance(f, Task) else self.task(f, name=name, **task_options)
            schedule_name = name or task.name
            if schedule_name in self.schedules:
                raise ConfigError(f"two schedules are named {schedule_name!r}; give one of them name=...")
            sched = Schedule(schedule_name, cron, tz, task.name, dict(args or {}), on_missed, max_waiting)
            job_row(self, {"task": task.name, "args": sched.args})  # the args must be storable, checked now
            self.schedules[schedule_name] = sched
            return task

        return register

    def set_queue_limits(self, queue: str, *, max_running: int | None = None, max_per_second: int | None = None,
                         conn: psycopg.Connection | None = None, actor: str | None = None) -> None:
        """Limit a queue across all workers: at most ``max_running`` of its jobs
        at once, at most ``max_per_second`` started per second (None: no limit).
        Stored in the database at once; every worker obeys it from its next claim.
        The same call as `pgsteady queues limit` and the dashboard (``queues.set_limits``):
        checked by the same rule and recorded in the queue's history with ``actor``
        (default ``app:user@host:pid``)."""
        actor = actor or f"app:{user_at_host()}:{os.getpid()}"
        if conn is not None:
            queues.set_limits(conn, self.queries, queue, max_running=max_running, max_per_second=max_per_second,
                              actor=actor)
            return
        queues.validate_name(queue)  # bad input is refused before a connection is taken
        queues.validate_limits(max_running, max_per_second)
        with self.pool().connection() as own:
            queues.set_limits(own, self.queries, queue, max_running=max_running, max_per_second=max_per_second,
                              actor=actor)

    def get_task(self, name: str) -> Task:
        try:
            return self.tasks[name]
        except KeyError:
            hint = did_you_mean(name, self.tasks, none="this App registers no tasks")
            raise UnknownTask(f"unknown task {name!r}; {hint}") from None

    # -- connections --------------------------------------------------------

    def pool(self) -> ConnectionPool:
        """The App's own small pool for enqueueing (autocommit connections)."""
        with self._lock:
            if self._pool is None:
                dsn = self.dsn
                database.connect(dsn, pooler=self.pooler).close()  # fail fast, with a clear message, on a bad DSN
                self._pool = ConnectionPool(dsn, min_size=1, max_size=8, open=True, name="pgsteady-enqueue",
                                            **Link(dsn, self.pooler).pool_kwargs(sync=True))
            return self._pool

    async def async_pool(self) -> AsyncConnectionPool:
        """The App's async pool on the running event loop (one per loop)."""
        loop = asyncio.get_running_loop()
        pool = self._async_pools.get(loop)
        if pool is None:
            pool = AsyncConnectionPool(self.dsn, min_size=1, max_size=8, open=False, name="pgsteady-enqueue-async",
                                       **Link(self.dsn, self.pooler).pool_kwargs())
            self._async_pools[loop] = pool
            await pool.open(wait=True)
        return pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

    async def aclose(self) -> None:
        """Close the async pool of the running loop (and the sync one)."""
        pool = self._async_pools.pop(asyncio.get_running_loop(), None)
        if pool is not None:
            await pool.close()
        self.close()

    # -- enqueue ------------------------------------------------------------

    def enqueue(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | timedelta | None = None,
        conn: psycopg.Connection | None = None,
    ) -> JobRef:
        """Enqueue one job. With ``conn`` the job is part of the caller's
        transaction and becomes visible to workers only if it commits."""
        return self.enqueue_many(
            [dict(task=name, args=args, key=key, queue=queue, priority=priority, run_at=run_at)], conn=conn
        )[0]

    def enqueue_many(self, jobs: Iterable[Mapping[str, Any] | tuple], *, conn: psycopg.Connection | None = None) -> list[JobRef]:
        """Enqueue many jobs in one transaction (by COPY when none has a key,
        else one INSERT per 5,000); returns one JobRef per job, in order, with
        ids ascending in input order. Items are ``(task, args)`` tuples or
        dicts with ``task``, ``args`` and optionally ``key``, ``queue``,
        ``priority``, ``run_at``.
        Every item is checked before anything is written."""
        rows = [job_row(self, item) for item in jobs]
        if not rows:
            return []
        if conn is not None:
            if not isinstance(conn, psycopg.Connection):
                raise ConfigError("conn= must be a psycopg 3 (sync) Connection; from async code use "
                                  "`await app.enqueue_many_async(..., conn=...)`")
            return _writes_sync.insert(conn, self.queries, rows, self.key_retention)
        if not self._warned_loop and asyncio.events._get_running_loop() is not None:
            self._warned_loop = True  # once: the call works, it only stalls the loop meanwhile
            log.warning("app.enqueue()/enqueue_many() called on a running event loop blocks it until the "
                        "database answers; in async code use `await app.enqueue_async(...)`")
        with self.pool().connection() as own, own.transaction():
            return _writes_sync.insert(own, self.queries, rows, self.key_retention)

    async def enqueue_async(
        self,
        name: str,
        args: Mapping[str, Any] | None = None,
        *,
        key: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | timedelta | None = None,
        conn: psycopg.AsyncConnection | None = None,
    ) -> JobRef:
        """``enqueue`` for async code: never blocks the event loop. With an
        ``AsyncConnection`` (an async task's ``ctx.conn``) the job is part of
        that transaction."""
        return (await self.enqueue_many_async(
            [dict(task=name, args=args, key=key, queue=queue, priority=priority, run_at=run_at)], conn=conn))[0]

    async def enqueue_many_async(self, jobs: Iterable[Mapping[str, Any] | tuple], *,
                                 conn: psycopg.AsyncConnection | None = None) -> list[JobRef]:
        """``enqueue_many`` for async code (the same checks and writes)."""
        rows = [job_row(self, item) for item in jobs]
        if not rows:
            return []
        if conn is not None:
            if not isinstance(conn, psycopg.AsyncConnection):
                raise ConfigError("conn= must be a psycopg 3 AsyncConnection here; with a sync one use app.enqueue_many")
            return await _writes_async.insert(conn, self.queries, rows, self.key_retention)
        async with (await self.async_pool()).connection() as own, own.transaction():
            return await _writes_async.insert(own, self.queries, rows, self.key_retention)
