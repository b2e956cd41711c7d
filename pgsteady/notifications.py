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
import secrets
from collections.abc import Awaitable, Callable
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


@dataclass(frozen=True, slots=True)
class Probe:
    """A listener's test of its own connection: does a notification arrive?"""

    token: str


Message = JobsAvailable | QueuesChanged | CancelRequested | Probe
_CANCEL = "cancel:"
_PROBE = "probe:"
# How long a listener waits for its probe before it warns that notifications
# do not arrive (a LISTEN through a transaction pooler, typically).
PROBE_SECONDS = 5.0


def encode(schema: str, message: Message) -> dict[str, str]:
    """The ``channel`` and ``payload`` parameters of a ``pg_notify`` query."""
    if isinstance(message, JobsAvailable):
        return {"channel": jobs_channel(schema), "payload": message.queue}
    if isinstance(message, QueuesChanged):
        return {"channel": control_channel(schema), "payload": "queues"}
    if isinstance(message, CancelRequested):
        return {"channel": control_channel(schema), "payload": f"{_CANCEL}{int(message.job_id)}"}
    if isinstance(message, Probe):
        return {"channel": control_channel(schema), "payload": f"{_PROBE}{message.token}"}
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
    if payload.startswith(_PROBE) and 0 < len(payload) - len(_PROBE) <= 64:
        return Probe(payload[len(_PROBE):])
    return None


async def listen(connect: Callable[[], Awaitable[psycopg.AsyncConnection]], schema: str,
                 handle: Callable[[Message | None], None], *,
                 probe: Callable[[Message], Awaitable[None]] | None = None, poll_interval: float = 1.0) -> None:
    """LISTEN on both channels for ever, calling ``handle`` with each decoded
    message, and with None after every (re)connection: anything sent while
    nobody listened is lost, so the caller should look at the rows then.

    With ``probe`` (a way to send a message through another connection), each
    new connection checks that a notification reaches it, and warns when none
    does within PROBE_SECONDS: the worker then still runs, by polling."""
    delay = 0.5
    while True:
        try:
            conn = await connect()
            async with conn:
                for channel in (jobs_channel(schema), control_channel(schema)):
                    await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
                handle(None)
                delay = 0.5
                sent = Probe(secrets.token_hex(8))
                arrived = asyncio.Event()
                watch = asyncio.ensure_future(_watch(probe, sent, arrived, poll_interval)) if probe else None
                try:
                    async for note in conn.notifies():
                        message = decode(schema, note.channel, note.payload)
                        if message == sent:
                            arrived.set()
                        elif message is not None and not isinstance(message, Probe):
                            handle(message)
                finally:
                    if watch is not None:
                        watch.cancel()
        except psycopg.OperationalError as exc:
            log.warning("listen connection lost (%s); reconnecting", scrub(str(exc)).strip())
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


async def _watch(probe: Callable[[Message], Awaitable[None]], sent: Probe, arrived: asyncio.Event,
                 poll_interval: float) -> None:
    try:
        await probe(sent)
        async with asyncio.timeout(PROBE_SECONDS):
            await arrived.wait()
    except TimeoutError:
        log.warning("notifications do not reach this worker's LISTEN connection (is a pooler in transaction "
                    "mode in front of it? set listen_dsn to a direct DSN); polling every %ss", poll_interval)
    except psycopg.Error as exc:
        log.info("could not check that notifications arrive (%s)", scrub(str(exc)).strip())
