"""Recording how attempts ended: the Completer, and the pooled writes it uses.

The Completer owns the attempts this process holds (``active``) until their
outcome is written, and the successes waiting for the claimer's next round
(``done``: complete_and_claim records them in the same statement that claims
the next jobs). Failures, cancellations and rejected late writes are written
here at once, each fenced by the attempt's lease token.

The failure path never fails: the error text and traceback are made
storable (no NUL, no lone surrogate, cut to the limits of
security/settings.py) before the write, and if the write is refused anyway
a short fallback is written; every failure is logged.
"""

from __future__ import annotations

import asyncio
import logging
import time
import traceback
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from . import _writes_async, _writes_sync
from .attempts import Attempt, WorkerStats
from .queries import Queries
from .retries import Retries
from .security.settings import MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS
from .tasks import Context, LeaseLost, RetryIn

log = logging.getLogger("pgsteady.worker")


class Db:
    """The worker's pool, and statements retried while PostgreSQL is away."""

    def __init__(self) -> None:
        self.pool: AsyncConnectionPool | None = None

    async def fetch(self, query: str, params: dict, *, retry_for: float = 0.0) -> list[tuple]:
        """Run a statement on a pooled connection; rows if it returns any.
        With ``retry_for`` a lost connection is retried with backoff for that
        many seconds (used for writes whose loss would cost a whole lease)."""
        deadline = time.monotonic() + retry_for
        delay = 0.2
        while True:
            try:
                async with self.pool.connection() as conn:
                    cur = await conn.execute(query, params)
                    return await cur.fetchall() if cur.description else []
            except psycopg.OperationalError:
                if time.monotonic() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def write(self, query: str, params: dict, *, retry_for: float = 5.0) -> None:
        await self.fetch(query, params, retry_for=retry_for)


def storable(text: str, limit: int, *, keep_end: bool = False) -> str:
    """Text PostgreSQL accepts: no NUL, no lone surrogate, at most ``limit`` characters."""
    text = text.replace("\x00", "\\x00")
    if not text.isascii():
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    if len(text) > limit:
        cut = f"… ({len(text) - limit:,} characters cut)"
        text = cut + text[-limit:] if keep_end else text[:limit] + cut
    return text


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, whatever the exception's __str__ does."""
    name = type(exc).__name__
    try:
        text = str(exc)
    except Exception as err:  # a broken __str__ must not lose the failure
        return f"{name}: (str() of the exception raised {type(err).__name__})"
    # Cut before splitting: a huge message is not copied line by line.
    lines = text[: MAX_ERROR_CHARS * 2].strip().splitlines()
    return storable(f"{name}: {lines[0]}" if lines else name, MAX_ERROR_CHARS)


def format_traceback(exc: BaseException) -> str:
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception:
        text = f"(the traceback of {type(exc).__name__} could not be formatted)"
    return storable(text, MAX_TRACEBACK_CHARS, keep_end=True)


class Completer:
    """Writes each attempt's outcome; see the module's docstring."""

    def __init__(self, db: Db, q: Queries, stats: WorkerStats, retries: Retries, *, worker_id: str,
                 release: str | None, lease: float) -> None:
        self.db = db
        self.q = q
        self.stats = stats
        self.retries = retries
        self.worker_id = worker_id
        self.release = release
        self.lease = lease
        self.active: dict[int, Attempt] = {}
        self.done: list[Attempt] = []

    def forget(self, att: Attempt) -> None:
        att.finished = True
        self.active.pop(att.id, None)

    # -- successes ------------------------------------------------------------

    def succeeded(self, att: Attempt) -> None:
        att.finished = True
        self.done.append(att)

    def succeeded_in_tx(self, att: Attempt) -> None:
        self.forget(att)
        self.stats.succeeded += 1

    def completed(self, batch: list[Attempt], accepted: list[int]) -> None:
        """A round recorded ``batch``; ``accepted`` are the ids whose lease still held."""
        for att in batch:
            self.active.pop(att.id, None)
        self.stats.succeeded += len(accepted)
        self.stats.rejected += len(batch) - len(accepted)

    async def complete_in_tx(self, conn: psycopg.AsyncConnection, att: Attempt) -> bool:
        return await _writes_async.complete_in_tx(conn, self.q, att.id, att.token)

    def complete_in_tx_sync(self, conn: psycopg.Connection, att: Attempt) -> bool:
        return _writes_sync.complete_in_tx(conn, self.q, att.id, att.token)

    # -- other outcomes -------------------------------------------------------

    async def failed(self, att: Attempt, error: BaseException | str, tb: str | None, *, retry: bool) -> None:
        att.finished = True  # a terminal write is under way: the heartbeat must not call this lease lost
        asked = error.seconds if isinstance(error, RetryIn) else 0.0
        if isinstance(error, BaseException):
            tb = format_traceback(error) if tb is None else tb
            error = describe(error)
        else:
            error, tb = storable(error, MAX_ERROR_CHARS), storable(tb or "", MAX_TRACEBACK_CHARS, keep_end=True)
        backoff = self.retries.after_failure(att.task_name, att.attempt, at_least=asked) if retry else 0.0
        params = dict(id=att.id, token=att.token, retry=retry, backoff=timedelta(seconds=backoff), error=error,
                      traceback=tb, worker_id=self.worker_id, release=self.release)
        try:
            rows = await self.db.fetch(self.q.fail_job, params, retry_for=self.lease)
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            log.error("job %s: the failure could not be stored as given (%s); storing a short one",
                      att.id, type(exc).__name__)
            params.update(error=f"{error[:200]!a} (stored in ASCII: the full text was refused)", traceback="")
            rows = await self.db.fetch(self.q.fail_job, params, retry_for=self.lease)
        self.forget(att)
        outcome = rows[0][0] if rows else "rejected"
        if not rows:
            self.stats.rejected += 1
        elif outcome == "failed":
            self.stats.failed += 1
        else:
            self.stats.retried += 1
        log.info("job %s (%s) attempt %d failed: %s -> %s", att.id, att.task_name, att.attempt, error, outcome)

    async def cancelled(self, att: Attempt) -> None:
        att.finished = True
        rows = await self.db.fetch(self.q.cancel_running_job, dict(
            id=att.id, token=att.token, worker_id=self.worker_id, release=self.release), retry_for=self.lease)
        if rows:
            self.forget(att)
            self.stats.cancelled += 1
            return
        # The row does not say cancel_requested (or the lease moved on): never
        # cancelled on the worker's word alone.
        await self.failed(att, "stopped, but the job's row holds no cancel request", "", retry=True)

    async def rejected(self, att: Attempt, message: str) -> None:
        self.forget(att)
        self.stats.rejected += 1
        await self._event(att.id, att.attempt, "late_write_rejected", message)

    async def lost(self, atts: list[Attempt]) -> None:
        for a in atts:
            self.active.pop(a.id, None)
        try:
            await self.db.write(self.q.record_lost_leases, dict(
                ids=[a.id for a in atts], worker_id=self.worker_id, release=self.release))
        except psycopg.OperationalError as exc:  # only the history line is lost; the heartbeat must go on
            log.warning("could not record the lost leases of jobs %s (%s)", [a.id for a in atts],
                        type(exc).__name__)

    # -- what a running job writes --------------------------------------------

    async def log_line(self, ctx: Context, message: str, data: dict) -> None:
        await self._event(ctx.id, ctx.attempt, "log", message, Jsonb(data) if data else None)

    async def save_checkpoint(self, ctx: Context, value: Any) -> None:
        deadline = time.monotonic() + self.lease
        while True:
            try:
                async with self.db.pool.connection() as conn:
                    if await _writes_async.save_checkpoint(conn, self.q, ctx.id, ctx._token, value):
                        return
                    break
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
        await self._event(ctx.id, ctx.attempt, "late_write_rejected",
                          "checkpoint rejected: this attempt no longer holds the lease")
        raise LeaseLost()

    async def _event(self, job_id: int, attempt: int, kind: str, message: str, data: Any = None) -> None:
        await self.db.write(self.q.log_event, dict(job_id=job_id, attempt=attempt, worker_id=self.worker_id,
                                                   release=self.release, kind=kind, message=message, data=data))
