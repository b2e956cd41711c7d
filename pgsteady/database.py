"""Where the database is and how to reach it, without ever printing a password.

The DSN comes from, in order: an explicit argument (``--dsn``), the
``PGSTEADY_DSN`` environment variable, else the embedded PostgreSQL, which is
started on demand (see ``embedded.py``).
"""

from __future__ import annotations

import os
import re

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConfigError, DatabaseUnavailable
from .topology import READ_ONLY, Link

_PASSWORD_IN_URL = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)


def scrub(text: str) -> str:
    """Remove anything that looks like a password from a message or DSN."""
    text = _PASSWORD_IN_URL.sub(r"\1***\3", text)
    return _PASSWORD_KV.sub(r"\1***", text)


def describe(dsn: str) -> str:
    """A short, password-free name for a DSN: user@host:port/dbname."""
    try:
        p = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        return "<invalid DSN>"
    host = p.get("host") or "local socket"
    port = p.get("port") or "5432"
    return f"{p.get('user') or '(default user)'}@{host}:{port}/{p.get('dbname') or '(default db)'}"


def validate_dsn(dsn: str) -> str:
    try:
        conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        reason = scrub(str(exc)).splitlines()[0]
        raise ConfigError(
            f"the DSN is not a valid PostgreSQL connection string ({reason}); "
            "use a form like postgresql://user@host:5432/dbname"
        ) from None
    return dsn


def resolve_dsn(dsn: str | None = None) -> str:
    """The DSN to use: explicit, else PGSTEADY_DSN, else the embedded server."""
    dsn = dsn or os.environ.get("PGSTEADY_DSN") or None
    if dsn:
        return validate_dsn(dsn)
    from . import embedded

    return embedded.ensure_running()


def with_dbname(dsn: str, dbname: str) -> str:
    """The same server and user, another database."""
    return make_conninfo(dsn, dbname=dbname)


def connect(dsn: str, *, autocommit: bool = False, pooler: str | None = None, read_only: bool = False,
            **kwargs) -> psycopg.Connection:
    """A psycopg connection, or a DatabaseUnavailable with a password-free message.

    Set up for what stands in front of the server (topology.py): keepalives
    that notice a dead link, and no prepared statements behind a
    transaction pooler (``pooler``, else PGSTEADY_POOLER, else detected).
    ``read_only`` (a --read-dsn): every transaction of the session is read-only."""
    try:
        return Link(dsn, pooler, settings=READ_ONLY if read_only else {}).connect(autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise unavailable(dsn, exc) from None


async def connect_async(dsn: str, *, autocommit: bool = False, pooler: str | None = None,
                        **kwargs) -> psycopg.AsyncConnection:
    try:
        return await Link(dsn, pooler).connect_async(autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise unavailable(dsn, exc) from None


def unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable:
    lines = [ln.strip() for ln in scrub(str(exc)).splitlines() if ln.strip()]
    # psycopg's first line reads "connection failed: connection to server at
    # ... failed: <reason>"; the reason is the part worth showing.
    reason = lines[0].rsplit("failed: ", 1)[-1] if lines else type(exc).__name__
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {describe(dsn)}: {reason}; "
        "check --dsn / PGSTEADY_DSN and that the server is running"
    )
