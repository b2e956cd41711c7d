"""Where the database is and how to reach it, without ever printing a password.

The DSN comes from, in order: an explicit argument (``--dsn``), the
``PGSTEADY_DSN`` environment variable, else the embedded PostgreSQL, which is
started on demand (see ``embedded.py``).

This module owns redaction. Every DSN that comes through ``validate_dsn`` has
its password candidates remembered (taken from the raw text, so even a DSN
that libpq cannot parse gives them up), and ``scrub`` removes those and
anything shaped like a password from any message; libpq's parse errors quote
pieces of the DSN, so those quotes are dropped whole. Better than a password
in a DSN: the environment (PGPASSWORD), a service file (PGSERVICE) or
``~/.pgpass``, which libpq reads by itself.
"""

from __future__ import annotations

import os
import re
from urllib.parse import unquote

import psycopg
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from .errors import ConfigError, DatabaseUnavailable
from .security.settings import read_session_settings
from .topology import Link

_PASSWORD_IN_URL = re.compile(r"(postgres(?:ql)?://[^:/@\s]*:)([^@\s]*)(@)")
_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
_URL_AUTHORITY = (re.compile(r"^\s*postgres(?:ql)?://([^/?#]*)", re.IGNORECASE),
                  re.compile(r"^\s*postgres(?:ql)?://([^?#]*)", re.IGNORECASE),  # an unencoded "/" in it
                  re.compile(r"^\s*postgres(?:ql)?://(.*)", re.IGNORECASE | re.DOTALL))  # an unencoded "?" or "#"
_PIECES = re.compile(r"[@/?#:]")
_URL_PASSWORD_PARAM = re.compile(r"[?&]password=([^&#]*)", re.IGNORECASE)
_QUOTED = re.compile(r"[\"'].*[\"']", re.DOTALL)  # first quote to last: the token may hold quotes itself
_MIN_SECRET = 4  # shorter candidates would blank out ordinary words of every message
_secrets: set[str] = set()


def password_candidates(dsn: str) -> set[str]:
    """Every string of a DSN that may be (part of) its password, read from the raw text."""
    return {c for c in _candidates(dsn) if len(c) >= _MIN_SECRET}


def _candidates(dsn: str) -> set[str]:
    found: set[str] = set()
    for authority in (rx.match(dsn) for rx in _URL_AUTHORITY):
        if authority and "@" in authority.group(1):
            userinfo = authority.group(1).rsplit("@", 1)[0]
            if ":" in userinfo:
                password = userinfo.split(":", 1)[1]
                # libpq cuts at the first "@" or "/", so the pieces of an unencoded
                # password show up as a host, a port or a database name.
                found.update([password, *_PIECES.split(password)])
    found.update(_URL_PASSWORD_PARAM.findall(dsn))
    for value in (v for _, v in _PASSWORD_KV.findall(dsn)):
        found.update([value, value.strip("'"), value.strip("'").replace("\\'", "'").replace("\\\\", "\\")])
    found |= {unquote(c) for c in found}
    found |= {c.replace("\\", "\\\\") for c in found}  # as psycopg's messages escape a backslash
    return found - {""}


def has_password(dsn: str) -> bool:
    """Whether the DSN itself carries a password (rather than PGPASSWORD, a service file or .pgpass)."""
    try:
        return bool(conninfo_to_dict(dsn).get("password"))
    except psycopg.ProgrammingError:
        return bool(_candidates(dsn))


def scrub(text: str) -> str:
    """Remove anything that looks like a password, or is one we have seen in a DSN, from a message."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    text = _PASSWORD_IN_URL.sub(r"\1***\3", text)
    return _PASSWORD_KV.sub(r"\1***", text)


def describe(dsn: str) -> str:
    """A short, password-free name for a DSN: user@host:port/dbname."""
    try:
        validate_dsn(dsn)
    except ConfigError:
        return "<malformed DSN>"
    p = conninfo_to_dict(dsn)
    host = p.get("host") or "local socket"
    port = p.get("port") or "5432"
    return scrub(f"{p.get('user') or '(default user)'}@{host}:{port}/{p.get('dbname') or '(default db)'}")


def validate_dsn(dsn: str) -> str:
    """The DSN if libpq can use it, else a ConfigError that quotes none of it."""
    _secrets.update(password_candidates(dsn))
    if "\0" in dsn:
        # libpq stops reading at a NUL, and would read the rest of the password as a host.
        raise ConfigError("the DSN contains a NUL character; remove it (percent-encoding it as %00 is refused too)")
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise invalid(exc) from None
    keep_out = "better, keep the password out of the DSN (PGPASSWORD, a service file or ~/.pgpass)"
    if any("@" in h for h in (params.get("host") or "").split(",")):
        raise ConfigError(f"the DSN's host contains '@': a password with '@' must be percent-encoded (%40); {keep_out}")
    m = _URL_AUTHORITY[0].match(dsn)
    # libpq ends the user info at the first "@" (a "?" before it does not end it),
    # so a raw "@" in the database name is a password's second "@" or its "/".
    if m and "@" in (params.get("dbname") or "") and dsn.count("@") > 1:
        raise ConfigError("the DSN's database name contains '@': a '/' or '@' in the password must be "
                          f"percent-encoded; {keep_out}")
    if any(p and not p.strip().isdigit() for p in (params.get("port") or "").split(",")):
        raise ConfigError("the DSN's port is not a number: a ':', '/' or '@' in the password must be "
                          f"percent-encoded; {keep_out}")
    return dsn


def invalid(exc: BaseException) -> ConfigError:
    # libpq quotes the token it choked on, which may be the password: drop every quote.
    reason = _QUOTED.sub('"…"', scrub(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__)
    return ConfigError(f"the DSN is not a valid PostgreSQL connection string ({reason}); "
                       "use a form like postgresql://user@host:5432/dbname, with special characters "
                       "percent-encoded")


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
    ``read_only`` (a --read-dsn): the session carries the read settings of
    security/settings.py (read-only, a statement timeout), and every
    transaction psycopg opens on it begins READ ONLY. Behind a transaction
    pooler the settings hold inside transactions only (docs/deployment.md)."""
    settings = read_session_settings() if read_only else {}
    try:
        conn = Link(dsn, pooler, settings=settings).connect(autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise unavailable(dsn, exc) from None
    except psycopg.ProgrammingError as exc:
        raise _unparsable(dsn, exc) from None
    if read_only:
        conn.read_only = True  # BEGIN READ ONLY: holds per transaction, whatever the pooler
    return conn


async def connect_async(dsn: str, *, autocommit: bool = False, pooler: str | None = None,
                        **kwargs) -> psycopg.AsyncConnection:
    try:
        return await Link(dsn, pooler).connect_async(autocommit=autocommit, **kwargs)
    except psycopg.OperationalError as exc:
        raise unavailable(dsn, exc) from None
    except psycopg.ProgrammingError as exc:
        raise _unparsable(dsn, exc) from None


def _unparsable(dsn: str, exc: BaseException) -> ConfigError:
    _secrets.update(password_candidates(dsn))
    return invalid(exc)


def unavailable(dsn: str, exc: BaseException) -> DatabaseUnavailable | ConfigError:
    try:
        validate_dsn(dsn)  # a malformed DSN is the problem to report: libpq's message would quote its pieces
    except ConfigError as malformed:
        return malformed
    lines = [ln.strip() for ln in scrub(str(exc)).splitlines() if ln.strip()]
    # psycopg's first line reads "connection failed: connection to server at
    # ... failed: <reason>"; the reason is the part worth showing.
    reason = lines[0].rsplit("failed: ", 1)[-1] if lines else type(exc).__name__
    return DatabaseUnavailable(
        f"cannot connect to PostgreSQL at {describe(dsn)}: {reason}; "
        "check --dsn / PGSTEADY_DSN and that the server is running"
    )
