"""The NOTIFY protocol: its channels and messages, encoded and decoded here only.

Two channels per schema:

    <schema>_jobs     payload: a queue name. Sent by the jobs table's insert
                      trigger (sql/schema.sql, notify_jobs) and by a retry;
                      wakes the workers that serve that queue.
    <schema>_control  payload: "queues" (a queue was paused or limited: drop
                      the cached limits) or "cancel:<job id>" (look at that
                      job's row now rather than at the next heartbeat).

A notification is a hint, never an authority. Any role that can connect may
NOTIFY any channel, so a listener only wakes up and re-reads rows that need
privileges to write: a cancel takes effect only if the job's row says
``cancel_requested`` (written by ``jobs.cancel``). An unknown payload decodes
to None and is ignored.

The trigger builds ``TG_TABLE_SCHEMA || '_jobs'`` in SQL, the one place
outside this module; tests/test_enqueue.py checks that it matches.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .database import scrub

log = logging.getLogger("pgsteady.worker")

# PostgreSQL's limits: an identifier (a channel) is at most NAMEDATALEN - 1
# bytes, and a payload must be shorter than 8000 bytes.
MAX_CHANNEL_BYTES = 63
MAX_PAYLOAD_BYTES = 7999

JOBS_SUFFIX = "_jobs"
CONTROL_SUFFIX = "_control"
# The longest schema name whose channels are still valid identifiers.
MAX_SCHEMA_LEN = MAX_CHANNEL_BYTES - max(len(JOBS_SUFFIX), len(CONTROL_SUFFIX))


def jobs_channel(schema: str) -> str:
    return schema + JOBS_SUFFIX


def control_channel(schema: str) -> str:
    return schema + CONTROL_SUFFIX


@dataclass(frozen=True, slots=True)
class JobsAvailable:
    """Jobs became claimable in this queue."""

    queue: str


@dataclass(frozen=True, slots=True)
class QueuesChanged:
    """A queue was paused, resumed or limited."""


@dataclass(frozen=True, slots=True)
class CancelRequested:
    """Someone asked to cancel this running job (check its row)."""

    job_id: int


Message = JobsAvailable | QueuesChanged | CancelRequested
_CANCEL = "cancel:"


def encode(schema: str, message: Message) -> dict[str, str]:
    """The ``channel`` and ``payload`` parameters of a ``pg_notify`` query."""
    if isinstance(message, JobsAvailable):
        return {"channel": jobs_channel(schema), "payload": message.queue}
    if isinstance(message, QueuesChanged):
        return {"channel": control_channel(schema), "payload": "queues"}
    if isinstance(message, CancelRequested):
        return {"channel": control_channel(schema), "payload": f"{_CANCEL}{int(message.job_id)}"}
    raise TypeError(f"not a notification message: {message!r}")


def decode(schema: str, channel: str, payload: str) -> Message | None:
    """The message a notification carries, None if it is not one of ours."""
    if channel == jobs_channel(schema):
        return JobsAvailable(payload)
    if channel != control_channel(schema):
        return None
    if payload == "queues":
        return QueuesChanged()
    if payload.startswith(_CANCEL):
        digits = payload[len(_CANCEL):]
        if digits.isascii() and digits.isdigit() and len(digits) <= 19:
            return CancelRequested(int(digits))
    return None


async def listen(dsn: str, schema: str, handle: Callable[[Message | None], None]) -> None:
    """LISTEN on both channels for ever, calling ``handle`` with each decoded
    message, and with None after every (re)connection: anything sent while
    nobody listened is lost, so the caller should look at the rows then."""
    delay = 0.5
    while True:
        try:
            conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
            async with conn:
                for channel in (jobs_channel(schema), control_channel(schema)):
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                handle(None)
                delay = 0.5
                async for note in conn.notifies():
                    message = decode(schema, note.channel, note.payload)
                    if message is not None:
                        handle(message)
        except psycopg.OperationalError as exc:
            log.warning("listen connection lost (%s); reconnecting", scrub(str(exc)).strip())
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)
