"""One attempt of a job, as the worker sees it: its state, its outcome
signals, and the small helpers that run a task function.

Internal to the worker (pgsteady/worker.py); nothing here touches the database.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from .tasks import Context, Task


class LeaseLost(Exception):
    """The attempt's lease token no longer matches: someone else owns the job."""


class StopRequested(Exception):
    """The task returned after someone cancelled its job: end it as cancelled."""


class TimedOut(Exception):
    """The task ran past its timeout (kept apart from a TimeoutError the task raises itself)."""


@dataclass
class Attempt:
    id: int
    token: Any
    attempt: int
    task_name: str
    ctx: Context
    runner: asyncio.Task | None = None
    cancel_requested: bool = False
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


def bind(task: Task, ctx: Context):
    """A zero-argument callable that runs the task with the job's arguments."""
    if task.takes_ctx:
        return lambda: task.fn(ctx, **ctx.args)
    return lambda: task.fn(**ctx.args)


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
