"""Cron schedules: their definition, validation, and which times are due.

A schedule turns a task into cron events: ``@app.periodic("*/5 * * * *")``.
The expression is croniter's syntax (five fields, or six with seconds as the
sixth). Which scheduled times are due is computed here, in plain Python; the
scheduler service (maintenance/scheduler.py) makes each due time one job,
exactly once, through a unique key in the database.

After downtime several times may be due at once, and runs enqueued earlier
may still wait unclaimed (no worker serves the queue). ``on_missed`` says
what to do with the due times, and ``max_waiting`` (default 1, None for no
limit) how many runs may wait at once; due times beyond it are missed, so a
queue nobody serves never piles up a backlog that later runs as a burst:

    skip   run only the newest time, and only if it is recent (within grace);
           the others are recorded as missed
    once   run the newest time once; the others are recorded as missed
    all    run every due time, the newest MAX_CATCH_UP of them at most
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter

from .errors import ConfigError

ON_MISSED = ("skip", "once", "all")
MAX_CATCH_UP = 100
# Walking a very frequent schedule across a long outage is bounded too.
_MAX_STEPS = 10_000
SKIP_GRACE = timedelta(seconds=60)


@dataclass(frozen=True)
class Schedule:
    name: str
    cron: str
    tz: str
    task: str
    args: dict[str, Any] = field(default_factory=dict)
    on_missed: str = "once"
    max_waiting: int | None = 1

    def __post_init__(self) -> None:
        where = f"schedule {self.name!r}"
        if not isinstance(self.cron, str) or not croniter.is_valid(self.cron):
            raise ConfigError(
                f"{where}: {self.cron!r} is not a valid cron expression; use five fields "
                "(minute hour day month weekday) or six with seconds last, e.g. '*/5 * * * *'"
            )
        try:
            ZoneInfo(self.tz)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            raise ConfigError(f"{where}: unknown time zone {self.tz!r}; use an IANA name such as 'UTC' or 'Europe/Paris'") from None
        if self.on_missed not in ON_MISSED:
            raise ConfigError(f"{where}: on_missed must be one of {', '.join(ON_MISSED)}, not {self.on_missed!r}")
        try:
            self.next_after(datetime.now(ZoneInfo(self.tz)))
        except CroniterBadDateError:
            raise ConfigError(f"{where}: {self.cron!r} never fires (no date matches it, e.g. 31 February); "
                              "fix the day and month fields") from None
        if self.max_waiting is not None and (isinstance(self.max_waiting, bool) or not isinstance(self.max_waiting, int)
                                             or self.max_waiting < 1):
            raise ConfigError(f"{where}: max_waiting must be an integer >= 1 or None, not {self.max_waiting!r}")
        if not isinstance(self.args, dict):
            raise ConfigError(f"{where}: args must be a dict (the task's keyword arguments)")

    def next_after(self, when: datetime) -> datetime:
        return croniter(self.cron, when.astimezone(ZoneInfo(self.tz))).get_next(datetime)

    def due(self, last: datetime, now: datetime) -> tuple[list[datetime], int]:
        """Scheduled times in (last, now], oldest first, at most MAX_CATCH_UP of
        the newest; and how many older ones were left out."""
        it = croniter(self.cron, last.astimezone(ZoneInfo(self.tz)))
        times: list[datetime] = []
        dropped = 0
        for _ in range(_MAX_STEPS):
            t = it.get_next(datetime)
            if t > now:
                return times, dropped
            times.append(t)
            if len(times) > MAX_CATCH_UP:
                times.pop(0)
                dropped += 1
        # Still behind after _MAX_STEPS: jump to the newest due time.
        newest = croniter(self.cron, now.astimezone(ZoneInfo(self.tz))).get_prev(datetime)
        if newest > times[-1]:
            times = [newest]
            dropped += MAX_CATCH_UP  # a lower bound; the message says "at least"
        return times, dropped

    def choose(self, due: list[datetime], now: datetime) -> list[datetime]:
        """The due times to run, by on_missed."""
        if not due:
            return []
        if self.on_missed == "all":
            return due
        if self.on_missed == "once" or now - due[-1] <= SKIP_GRACE:
            return due[-1:]
        return []

    def cap(self, chosen: list[datetime], waiting: int) -> list[datetime]:
        """The newest of ``chosen`` that fit while ``waiting`` earlier runs
        are still unclaimed: never more than max_waiting waiting at once."""
        if self.max_waiting is None:
            return chosen
        room = max(self.max_waiting - waiting, 0)
        return chosen[max(len(chosen) - room, 0):] if room else []
