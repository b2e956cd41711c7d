"""Tasks, their retry policy, and the context a running job sees."""

from __future__ import annotations

import asyncio
import inspect
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Callable

from .errors import ConfigError

if TYPE_CHECKING:
    from .app import App, JobRef


class Discard(Exception):
    """Raise from a task to fail the job at once, without further attempts."""


@dataclass(frozen=True)
class Retry:
    """Exponential backoff with jitter: attempt n waits about base * 2**(n-1).

    The delay is capped at ``cap`` seconds, and up to ``jitter`` of it is
    taken away at random so that jobs that failed together do not all come
    back in the same instant.
    """

    base: float = 2.0
    cap: float = 3600.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if self.base < 0 or self.cap < 0 or not 0 <= self.jitter <= 1:
            raise ConfigError("Retry needs base >= 0, cap >= 0 and 0 <= jitter <= 1")

    def backoff(self, attempt: int) -> float:
        delay = min(self.cap, self.base * 2 ** max(attempt - 1, 0))
        return delay * (1 - self.jitter * random.random())


RetryPolicy = Retry | Callable[[int], float]


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
        where = f"task {name!r}"
        if not isinstance(queue, str) or not queue:
            raise ConfigError(f"{where}: queue must be a non-empty string")
        if not isinstance(priority, int) or not -32768 <= priority <= 32767:
            raise ConfigError(f"{where}: priority must be an integer between -32768 and 32767")
        if not isinstance(max_attempts, int) or max_attempts < 1:
            raise ConfigError(f"{where}: max_attempts must be an integer >= 1")
        if timeout is not None and (not isinstance(timeout, (int, float)) or timeout <= 0):
            raise ConfigError(f"{where}: timeout must be a positive number of seconds or None")
        if not (isinstance(retry, Retry) or callable(retry)):
            raise ConfigError(f"{where}: retry must be a pgsteady.Retry or a function attempt -> seconds")
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

    def backoff(self, attempt: int) -> float:
        return self.retry.backoff(attempt) if isinstance(self.retry, Retry) else float(self.retry(attempt))

    def enqueue(self, **kwargs: Any) -> JobRef:
        """Enqueue a job of this task with these keyword arguments."""
        return self.app.enqueue(self.name, kwargs)

    def configure(
        self,
        *,
        key: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
        run_at: datetime | timedelta | None = None,
        conn: Any = None,
    ) -> _Configured:
        """Options for one enqueue: ``task.configure(key="post:1").enqueue(post_id=1)``."""
        return _Configured(self, dict(key=key, queue=queue, priority=priority, run_at=run_at, conn=conn))


@dataclass(frozen=True)
class _Configured:
    task: Task
    options: dict[str, Any]

    def enqueue(self, **kwargs: Any) -> JobRef:
        return self.task.app.enqueue(self.task.name, kwargs, **self.options)


class Context:
    """What a running job knows about itself; the ``ctx`` of a task.

    ``conn`` is set only for transactional tasks: it is the transaction that
    will also mark the job succeeded, so writes through it happen exactly once.
    ``log()`` adds a line to the job's history; ``cancelled`` turns true when
    someone cancels the job (sync tasks should check it in long loops).
    """

    def __init__(self, *, id: int, attempt: int, key: str | None, args: dict, task: str, queue: str,
                 max_attempts: int, last_checkpoint: Any, runtime: Any, token: Any) -> None:
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

    def log(self, message: str, **data: Any) -> asyncio.Future | None:
        """Add a line to this job's history. From a sync task this waits for
        the write; from async code it returns an awaitable you may await."""
        return self._runtime.submit(self._runtime.log_event(self, str(message), data))

    def checkpoint(self, value: Any) -> asyncio.Future | None:
        """Store progress (JSON) for the next attempt of this job to resume from.
        The write presents this attempt's lease token; a stale attempt's is refused.
        In a transactional task it goes through ctx.conn and commits with the task's writes."""
        self.last_checkpoint = value
        if self.conn is not None:
            return self._runtime.checkpoint_in_tx(self, value)
        return self._runtime.submit(self._runtime.save_checkpoint(self, value))

    def __repr__(self) -> str:
        return f"<Context job={self.id} task={self.task} attempt={self.attempt}>"
