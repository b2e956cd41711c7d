"""The retry policy: how long a job waits before its next attempt.

This is the one place that decides a backoff. Every path asks it:

    a task raised, or ran past its timeout     the task's policy (Retry, or a function)
    a task raised RetryIn(seconds)             the longer of those seconds and the policy's
    a job of a task this worker does not know  UNKNOWN_TASK (another release may know it)
    a lease expired and the job is rescued     the task's policy, as for a failure
    an index build hit its lock timeout        Retry(...).backoff(n), see changes/build.py

The SQL never computes a delay: it is handed the seconds decided here.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Union

from .errors import ConfigError

if TYPE_CHECKING:
    from .tasks import Task

log = logging.getLogger("pgsteady.worker")

# The longest wait any policy may ask for: a function that returns more (or
# NaN, or a negative number) is clamped, so a bad policy cannot park a job
# for a century or fail the failure write.
MAX_BACKOFF = 7 * 24 * 3600.0


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
        for label in ("base", "cap", "jitter"):
            value = getattr(self, label)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise ConfigError(f"Retry {label} must be a finite number, not {value!r}")
        if self.base < 0 or self.cap < 0 or not 0 <= self.jitter <= 1:
            raise ConfigError("Retry needs base >= 0, cap >= 0 and 0 <= jitter <= 1")

    def backoff(self, attempt: int) -> float:
        exponent = min(max(attempt - 1, 0), 64)  # 2**64 * base is past any cap already
        delay = min(self.cap, self.base * 2 ** exponent)
        return delay * (1 - self.jitter * random.random())


RetryPolicy = Union[Retry, Callable[[int], float]]

DEFAULT = Retry()
# A job whose task this worker's App does not define: retried while attempts
# remain, never waiting more than a minute, in case a newer release knows it.
UNKNOWN_TASK = Retry(base=2.0, cap=60.0, jitter=0.0)


def check(policy: object, where: str) -> RetryPolicy:
    if not (isinstance(policy, Retry) or callable(policy)):
        raise ConfigError(f"{where}: retry must be a pgsteady.Retry or a function attempt -> seconds")
    return policy  # type: ignore[return-value]


def delay(policy: RetryPolicy, attempt: int) -> float:
    """Seconds to wait after ``attempt`` failed, clamped to [0, MAX_BACKOFF]."""
    seconds = policy.backoff(attempt) if isinstance(policy, Retry) else float(policy(attempt))
    if not seconds >= 0:  # also NaN
        return 0.0
    return min(seconds, MAX_BACKOFF)


class Retries:
    """The policy for every job of an App, by task name (the worker's one entry)."""

    def __init__(self, tasks: Mapping[str, Task]) -> None:
        self._tasks = tasks

    def after_failure(self, task_name: str, attempt: int, *, at_least: float = 0.0) -> float:
        """Seconds until the next attempt; ``at_least``: what the task asked
        for (RetryIn), clamped like any policy's answer."""
        task = self._tasks.get(task_name)
        try:
            seconds = delay(task.retry if task is not None else UNKNOWN_TASK, attempt)
        except Exception:  # the failure path must not fail: a broken policy gets the default
            log.exception("retry policy of task %r failed; using the default backoff", task_name)
            seconds = delay(DEFAULT, attempt)
        return max(seconds, min(at_least, MAX_BACKOFF)) if at_least > 0 else seconds
