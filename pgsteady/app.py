"""App: configuration, the task registry and the enqueue API."""

from __future__ import annotations

import difflib
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

import psycopg
from psycopg_pool import ConnectionPool

from . import database
from .errors import ConfigError, InvalidPayload, UnknownTask
from .queries import Queries, for_schema, validate_schema
from .schedules import Schedule
from .tasks import Retry, RetryPolicy, Task

DEFAULT_MAX_PAYLOAD = 256 * 1024
DEFAULT_KEY_RETENTION = timedelta(hours=24)
_KEY_ATTEMPTS = 3
# From this many jobs without keys, enqueue_many uses COPY (two round trips,
# then far less work per row than an INSERT).
_COPY_MIN = 100
# An escaped NUL in JSON text: \u0000 not itself preceded by an escaping backslash.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
# One encoder for every job: json.dumps() with options builds a new one per call.
_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode
_OPTIONS = frozenset({"task", "args", "key", "queue", "priority", "run_at"})


@dataclass(frozen=True)
class JobRef:
    """What enqueue returns: the job's id, and whether this call created it
    (False when an active job already held the idempotency key)."""

    id: int
    created: bool
    key: str | None = None


class _Row(NamedTuple):  # a tuple: the bulk insert turns rows into columns with zip()
    queue: str
    task: str
    args: str
    key: str | None
    priority: int
    run_at: datetime | None
    max_attempts: int


class App:
    """The entry point: tasks are registered on it and jobs enqueued through it.

    ``dsn`` defaults to PGSTEADY_DSN, else the embedded PostgreSQL. ``release``
    (default PGSTEADY_RELEASE) is recorded with every attempt, so monitoring
    can compare releases.
    """

    def __init__(
        self,
        dsn: str | None = None,
        schema: str = "pgsteady",
        release: str | None = None,
        *,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD,
        key_retention: timedelta = DEFAULT_KEY_RETENTION,
    ) -> None:
        if not isinstance(max_payload_bytes, int) or max_payload_bytes < 2:
            raise ConfigError("max_payload_bytes must be an integer >= 2")
        if not isinstance(key_retention, timedelta) or key_retention < timedelta(0):
            raise ConfigError("key_retention must be a non-negative datetime.timedelta")
        self._dsn = database.validate_dsn(dsn) if dsn else None
        self.schema = validate_schema(schema)
        self.release = release or os.environ.get("PGSTEADY_RELEASE") or None
        self.max_payload_bytes = max_payload_bytes
        self.key_retention = key_retention
        self.tasks: dict[str, Task] = {}
        self.schedules: dict[str, Schedule] = {}
        self._pool: ConnectionPool | None = None
        self._lock = threading.Lock()

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
        retry: RetryPolicy = Retry(),
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
        **task_options: Any,
    ) -> Callable[[Callable[..., Any] | Task], Task]:
        """Run a task on a cron schedule: ``@app.periodic("0 3 * * *", tz="Europe/Paris")``.

        Stack it on a function (it becomes a task; ``task_options`` are those of
        ``app.task``) or on an existing task. Each scheduled time is enqueued
        exactly once however many workers run; ``on_missed`` (skip, once, all)
        says what happens to times missed while no worker ran.
        """

        def register(f: Callable[..., Any] | Task) -> Task:
            task = f if isinstance(f, Task) else self.task(f, name=name, **task_options)
            schedule_name = name or task.name
            if schedule_name in self.schedules:
                raise ConfigError(f"two schedules are named {schedule_name!r}; give one of them name=...")
            sched = Schedule(schedule_name, cron, tz, task.name, dict(args or {}), on_missed)
            self._row({"task": task.name, "args": sched.args})  # the args must be storable, checked now
            self.schedules[schedule_name] = sched
            return task

        return register

    def set_queue_limits(self, queue: str, *, max_running: int | None = None, max_per_second: int | None = None,
                         conn: psycopg.Connection | None = None) -> None:
        """Limit a queue across all workers: at most ``max_running`` of its jobs
        at once, at most ``max_per_second`` started per second (None: no limit).
        Stored in the database at once; every worker obeys it from its next claim."""
        for label, value in (("max_running", max_running), ("max_per_second", max_per_second)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{label} must be a positive integer or None")
        params = dict(queue=queue, max_running=max_running, max_per_second=max_per_second,
                      channel=f"{self.schema}_control")
        if conn is not None:
            conn.execute(self.queries.set_queue_limits, params)
            return
        with self.pool().connection() as own:
            own.execute(self.queries.set_queue_limits, params)

    def get_task(self, name: str) -> Task:
        try:
            return self.tasks[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.tasks, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"known tasks: {', '.join(sorted(self.tasks)) or 'none'}"
            raise UnknownTask(f"unknown task {name!r}; {hint}") from None

    # -- connections --------------------------------------------------------

    def pool(self) -> ConnectionPool:
        """The App's own small pool for enqueueing (autocommit connections)."""
        with self._lock:
            if self._pool is None:
                dsn = self.dsn
                database.connect(dsn).close()  # fail fast, with a clear message, on a bad DSN
                self._pool = ConnectionPool(dsn, min_size=1, max_size=8, kwargs={"autocommit": True},
                                            open=True, name="pgsteady-enqueue")
            return self._pool

    def close(self) -> None:
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None

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
        rows = [self._row(item) for item in jobs]
        if not rows:
            return []
        if conn is not None:
            if not isinstance(conn, psycopg.Connection):
                raise ConfigError("conn= must be a psycopg 3 (sync) Connection")
            return _insert(conn, self.queries, rows, self.key_retention)
        with self.pool().connection() as own, own.transaction():
            return _insert(own, self.queries, rows, self.key_retention)

    def _row(self, item: Mapping[str, Any] | tuple) -> _Row:
        if isinstance(item, tuple):
            if len(item) != 2:
                raise InvalidPayload("a job given as a tuple must be (task_name, args)")
            item = {"task": item[0], "args": item[1]}
        if not _OPTIONS.issuperset(item):
            unknown = set(item) - _OPTIONS
            raise ConfigError(f"unknown job option(s) {', '.join(sorted(unknown))}; use task, args, key, queue, priority, run_at")
        name = item.get("task")
        task = self.tasks.get(name) or self.get_task(name)
        args = item.get("args")
        args = {} if args is None else args
        if type(args) is not dict and not isinstance(args, Mapping):
            raise InvalidPayload(f"args of task {task.name!r} must be a JSON object (a dict), not {type(args).__name__}")
        try:
            encoded = _ENCODE(args)
        except (TypeError, ValueError) as exc:
            raise InvalidPayload(f"args of task {task.name!r} are not JSON: {exc}; pass strings, numbers, lists and objects") from None
        if "\\u0000" in encoded and _NUL.search(encoded):
            raise InvalidPayload(f"args of task {task.name!r} contain a NUL character (\\u0000), which PostgreSQL's jsonb cannot store; remove it")
        # A character is at most 4 bytes in UTF-8: count bytes only when it could matter.
        size = len(encoded) if len(encoded) * 4 <= self.max_payload_bytes else len(encoded.encode())
        if size > self.max_payload_bytes:
            raise InvalidPayload(
                f"args of task {task.name!r} are {size:,} bytes, over the {self.max_payload_bytes:,}-byte limit; "
                "store large data in a table and pass its id (or raise App(max_payload_bytes=...))"
            )
        key = item.get("key")
        if key is not None and (not isinstance(key, str) or not key):
            raise InvalidPayload("key must be a non-empty string or None")
        queue = item.get("queue") or task.queue
        priority = task.priority if item.get("priority") is None else item["priority"]
        if not isinstance(priority, int) or not -32768 <= priority <= 32767:
            raise InvalidPayload("priority must be an integer between -32768 and 32767")
        return _Row(queue, task.name, encoded, key, priority, _when(item.get("run_at")), task.max_attempts)


def _when(run_at: datetime | timedelta | None) -> datetime | None:
    if run_at is None:
        return None
    if isinstance(run_at, timedelta):
        return datetime.now(timezone.utc) + run_at
    if isinstance(run_at, datetime):
        if run_at.tzinfo is None:
            raise InvalidPayload("run_at must be timezone-aware (for example datetime.now(timezone.utc))")
        return run_at
    raise InvalidPayload("run_at must be a datetime or a timedelta")


def _insert(conn: psycopg.Connection, q: Queries, rows: list[_Row], retention: timedelta) -> list[JobRef]:
    """Insert rows; a row whose key is held by an active job is not inserted
    and gets that job's id instead. The unique index decides, not a read."""
    refs: list[JobRef | None] = [None] * len(rows)
    first_of_key: dict[str, int] = {}
    todo: list[int] = []
    for i, row in enumerate(rows):  # one job per key within a batch
        if row.key is not None and row.key in first_of_key:
            continue
        if row.key is not None:
            first_of_key[row.key] = i
        todo.append(i)
    if len(rows) >= _COPY_MIN and not first_of_key:
        return [JobRef(job_id, True) for job_id in _copy(conn, q, rows)]
    for _ in range(_KEY_ATTEMPTS):
        for start in range(0, len(todo), 5000):
            chunk = todo[start:start + 5000]
            inserted = _insert_chunk(conn, q, [rows[i] for i in chunk])
            for i, job_id in zip(chunk, inserted):
                if job_id is not None:
                    refs[i] = JobRef(job_id, True, rows[i].key)
        todo = [i for i in todo if refs[i] is None]
        if not todo:
            break
        held = [rows[i].key for i in todo]
        # Keys of succeeded jobs past their retention are released, and those
        # rows tried again; the rest return the job that holds the key.
        conn.execute(q.release_expired_keys, {"keys": held, "retention": retention}).fetchall()
        holders = {k: jid for k, jid, _ in conn.execute(q.find_by_keys, {"keys": held}).fetchall()}
        for i in todo:
            if rows[i].key in holders:
                refs[i] = JobRef(holders[rows[i].key], False, rows[i].key)
        todo = [i for i in todo if refs[i] is None]
    if todo:
        raise RuntimeError(f"could not settle idempotency keys {[rows[i].key for i in todo][:5]} after {_KEY_ATTEMPTS} tries")
    for i, row in enumerate(rows):
        if refs[i] is None:
            ref = refs[first_of_key[row.key]]
            refs[i] = JobRef(ref.id, False, row.key)
    return refs  # type: ignore[return-value]


def _copy(conn: psycopg.Connection, q: Queries, rows: list[_Row]) -> list[int]:
    """Many jobs without keys, by COPY; their ids ascend in input order, as
    the INSERT path's do, so a batch runs in the order it was given."""
    ids, now = conn.execute(q.reserve_job_ids, {"n": len(rows)}).fetchone()
    with conn.cursor().copy(q.copy_jobs) as copy:
        for job_id, r in zip(ids, rows):
            copy.write_row((job_id, r.queue, r.task, r.args, r.priority, r.run_at or now, r.max_attempts))
    return ids


def _insert_chunk(conn: psycopg.Connection, q: Queries, rows: list[_Row]) -> list[int | None]:
    """Ids for the rows inserted, None where an active key blocked the row."""
    if len(rows) == 1:
        r = rows[0]
        got = conn.execute(q.insert_job, dict(queue=r.queue, task=r.task, args=r.args, key=r.key,
                                               priority=r.priority, run_at=r.run_at,
                                               max_attempts=r.max_attempts)).fetchone()
        return [got[0] if got else None]
    cols = dict(zip(_Row._fields, map(list, zip(*rows))))
    returned = sorted(conn.execute(q.insert_jobs, cols).fetchall())
    inserted_keys = {k for _, k in returned if k is not None}
    ids = iter(jid for jid, _ in returned)
    # Rows are inserted in input order, so ascending ids follow the input.
    return [None if (r.key is not None and r.key not in inserted_keys) else next(ids) for r in rows]
