"""How pgsteady reaches PostgreSQL: directly, or through a connection pooler.

Three topologies are supported, each tested through a real PgBouncer
(docs/deployment.md gives the tested configuration of each):

    none          direct: a session is ours for as long as we hold it, so its
                  settings are SET once when it opens and psycopg prepares the
                  hot statements.
    session       PgBouncer pool_mode=session: the same, except that PgBouncer
                  refuses the ``options`` startup parameter; settings are
                  therefore SET after connecting, never passed at connect.
    transaction   PgBouncer pool_mode=transaction: a server session is lent for
                  one transaction, so nothing may outlive it. No prepared
                  statements (another client's ``_pg3_1`` would answer ours),
                  every setting SET LOCAL inside the transaction that needs it,
                  no LISTEN (a direct ``listen_dsn`` or polling), and no
                  session advisory locks (the leader and each index build hold
                  lease rows).

The mode comes from ``pooler=`` (App, Worker) or PGSTEADY_POOLER, else
``auto``: the first connection compares the backend pid the server announced
at connect with ``pg_backend_pid()``. They differ behind PgBouncer, which
announces a made-up cancel key; auto then takes the transaction rules, which
are correct under either pool mode.

Worker sessions also carry a short leash, so that a worker whose link is cut
cannot hold row locks for longer than about a lease: TCP keepalives and
``tcp_user_timeout`` on both ends, and ``idle_in_transaction_session_timeout``
(the server ends a transaction left idle that long, and with it its locks).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .errors import ConfigError, did_you_mean

log = logging.getLogger("pgsteady.topology")

AUTO, NONE, SESSION, TRANSACTION = "auto", "none", "session", "transaction"
POOLERS = (AUTO, NONE, SESSION, TRANSACTION)

# Client-side TCP settings for sessions without a lease to fit (CLI commands,
# the App's enqueue pool): notice a dead server within about a minute.
DEFAULT_LEASH = 60.0


@functools.cache
def _q():
    # Imported late: queries imports modules that connect through this one.
    # The queries used here do not touch the schema.
    from .queries import for_schema

    return for_schema("pgsteady")


def pooler_setting(value: str | None = None) -> str:
    """The pooler mode: ``value``, else PGSTEADY_POOLER, else auto; checked."""
    chosen = (value or os.environ.get("PGSTEADY_POOLER") or AUTO).strip().lower()
    if chosen not in POOLERS:
        raise ConfigError(f"pooler {chosen!r} is not known; {did_you_mean(chosen, POOLERS)} "
                          "(PGSTEADY_POOLER or pooler=...)")
    return chosen


def client_params(dsn: str, leash: float = DEFAULT_LEASH) -> dict[str, str | int]:
    """libpq keepalive parameters that notice a dead server (or a cut link)
    within about ``leash`` seconds; values the DSN sets itself win."""
    idle = max(1, math.floor(leash / 3))
    params: dict[str, str | int] = {
        "keepalives": 1, "keepalives_idle": idle, "keepalives_interval": max(1, math.floor(leash / 6)),
        "keepalives_count": 3, "tcp_user_timeout": int(leash * 1000),
    }
    try:
        given = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        given = {}
    return {k: v for k, v in params.items() if k not in given}


def leash_settings(lease: float) -> dict[str, str]:
    """Server-side settings of a worker session: a lost worker's transaction
    is ended, and its locks released, within about a lease. (A transactional
    task must not leave its transaction idle longer than that either.)"""
    ms = int(lease * 1000)
    return {
        "idle_in_transaction_session_timeout": str(ms),
        "tcp_keepalives_idle": str(max(1, math.floor(lease / 3))),
        "tcp_keepalives_interval": str(max(1, math.floor(lease / 6))),
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": str(ms),
    }


def behind_pooler(conn: psycopg.Connection) -> bool:
    """Whether a pooler stands between this connection and PostgreSQL."""
    return conn.execute(_q().backend_pid).fetchone()[0] != conn.info.backend_pid


async def behind_pooler_async(conn: psycopg.AsyncConnection) -> bool:
    return (await (await conn.execute(_q().backend_pid)).fetchone())[0] != conn.info.backend_pid


def session_lasts(conn: psycopg.Connection, pooler: str | None = None) -> bool:
    """Whether a session SET on ``conn`` holds for its next statements: not
    behind a transaction pooler (nor behind any pooler under ``auto``), where
    it would land on a server session that other clients get next."""
    mode = pooler_setting(pooler)
    if mode == AUTO:
        return not behind_pooler(conn)
    return mode != TRANSACTION


@dataclass
class Link:
    """How one kind of session reaches one DSN, and the settings it needs.

    Give ``kwargs()`` and ``configure`` to a connection or a pool, and open
    every explicit transaction with ``transaction(conn)``: the settings are
    then in force in every statement, whatever the pooler.
    """

    dsn: str
    pooler: str | None = None  # None: PGSTEADY_POOLER, else auto
    settings: Mapping[str, str] = field(default_factory=dict)
    leash: float = DEFAULT_LEASH
    mode: str | None = None  # resolved: none, session or transaction

    def __post_init__(self) -> None:
        self.pooler = pooler_setting(self.pooler)
        if self.pooler != AUTO:
            self.mode = self.pooler

    @property
    def per_transaction(self) -> bool:
        """Settings must be SET LOCAL in each transaction (transaction pooling)."""
        return self.mode == TRANSACTION

    def kwargs(self, **extra) -> dict:
        """Connection parameters for psycopg.connect or a pool's ``kwargs``."""
        kw: dict = dict(client_params(self.dsn, self.leash))
        if self.mode == TRANSACTION:
            kw["prepare_threshold"] = None
        return {**kw, **extra}

    def with_settings(self, settings: Mapping[str, str]) -> "Link":
        """The same link with more settings (one detection serves both)."""
        return Link(self.dsn, self.pooler, {**self.settings, **settings}, self.leash, self.mode)

    def pool_kwargs(self, *, sync: bool = False, timeout: float | None = None, **extra) -> dict:
        """Arguments of a psycopg_pool pool of autocommit connections. A pool
        that lost its server gives up reconnecting after a third of a leash
        and tries again when next asked, instead of backing off for minutes;
        ``timeout`` bounds the wait for a connection (the worker's: a lease,
        so that a write retried "for a lease" gives up after one)."""
        kw = dict(kwargs=self.kwargs(autocommit=True, **extra),
                  configure=self.configure if sync else self.configure_async,
                  reconnect_timeout=max(1.0, self.leash / 3))
        return kw if timeout is None else {**kw, "timeout": timeout}

    def _resolve(self, pooled: bool) -> None:
        if self.mode is None:
            self.mode = TRANSACTION if pooled else NONE
            if pooled:
                log.info("a connection pooler is in front of %s: using the transaction-pooling rules "
                         "(set PGSTEADY_POOLER=session to keep prepared statements under session pooling)",
                         _describe(self.dsn))

    def _session_params(self) -> dict | None:
        if self.per_transaction or not self.settings:
            return None
        return dict(names=list(self.settings), values=list(self.settings.values()), local=False)

    def _local_params(self) -> dict | None:
        if not self.per_transaction or not self.settings:
            return None
        return dict(names=list(self.settings), values=list(self.settings.values()), local=True)

    def configure(self, conn: psycopg.Connection) -> None:
        """Run once on each new connection (a pool's ``configure``)."""
        if self.mode is None:
            self._resolve(behind_pooler(conn))
        if self.mode == TRANSACTION:
            conn.prepare_threshold = None
        params = self._session_params()
        if params:
            conn.execute(_q().apply_settings, params)

    async def configure_async(self, conn: psycopg.AsyncConnection) -> None:
        if self.mode is None:
            self._resolve(await behind_pooler_async(conn))
        if self.mode == TRANSACTION:
            conn.prepare_threshold = None
        params = self._session_params()
        if params:
            await conn.execute(_q().apply_settings, params)

    def connect(self, **kwargs) -> psycopg.Connection:
        conn = psycopg.connect(self.dsn, **self.kwargs(**kwargs))
        try:
            self.configure(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    async def connect_async(self, **kwargs) -> psycopg.AsyncConnection:
        conn = await psycopg.AsyncConnection.connect(self.dsn, **self.kwargs(**kwargs))
        try:
            await self.configure_async(conn)
        except BaseException:
            await conn.close()
            raise
        return conn

    @asynccontextmanager
    async def in_force_async(self, conn: psycopg.AsyncConnection) -> AsyncIterator[None]:
        """The settings in force for the statements inside: nothing to do when
        they are the session's; a transaction of their own under transaction
        pooling."""
        if not self.per_transaction or not self.settings:
            yield
            return
        async with self.transaction_async(conn):
            yield

    @contextmanager
    def transaction(self, conn: psycopg.Connection) -> Iterator[psycopg.Transaction]:
        """``conn.transaction()`` with this link's settings in force."""
        with conn.transaction() as tx:
            params = self._local_params()
            if params:
                conn.execute(_q().apply_settings, params)
            yield tx

    @asynccontextmanager
    async def transaction_async(self, conn: psycopg.AsyncConnection) -> AsyncIterator[psycopg.AsyncTransaction]:
        async with conn.transaction() as tx:
            params = self._local_params()
            if params:
                await conn.execute(_q().apply_settings, params)
            yield tx


def worker_link(dsn: str, pooler: str | None, lease: float) -> Link:
    """How a worker's sessions reach the server: on a leash of one lease."""
    return Link(dsn, pooler, leash_settings(lease), leash=lease)


def application_name(role: str, worker_id: str) -> str:
    """What pg_stat_activity shows for a worker's connection (63 bytes at most)."""
    return f"pgsteady {role} {worker_id}".encode()[:63].decode(errors="ignore")


def _describe(dsn: str) -> str:
    from .database import describe  # database imports this module

    return describe(dsn)
