"""One read of everything the security checks look at.

``gather()`` reads the database's catalogue once (a few set-based queries,
sql/security.sql), the local files and command lines (local.py) and the
HTTP responses of the URLs given (web.py), and hands the checks a
:class:`Snapshot`. Checks never query or fetch anything themselves; a read
the server refused is kept in ``Database.unreadable`` with the server's
reason, and the checks that needed it answer "skip" with that reason.
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass, field
from datetime import timedelta
from importlib import resources
from typing import Any, Mapping

import psycopg
from psycopg.rows import dict_row

from ..database import connect, describe, scrub, unavailable
from ..queries import parse, render, validate_schema
from .local import LocalFacts
from .roles import DANGEROUS_ROLES, role_names
from .web import Response

SERVER_SETTINGS = ("password_encryption", "ssl", "log_lock_waits", "log_min_duration_statement",
                   "log_autovacuum_min_duration", "log_line_prefix", "log_statement",
                   "log_parameter_max_length", "log_connections", "log_disconnections")

QUERIES = parse((resources.files("pgsteady.security") / "sql" / "security.sql").read_text())


@dataclass
class Database:
    name: str                                  # user@host:port/db, never a password
    host: str | None                           # host name, address or socket folder
    via: str                                   # socket | loopback | network
    connection: dict[str, Any]
    role: dict[str, Any] | None                # role_facts of the connection's role
    tables: list[dict[str, Any]]               # that role's privileges on each pgsteady table
    public: list[dict[str, Any]]               # PUBLIC's privileges on the schema and its tables
    ssl: dict[str, Any] | None
    settings: dict[str, str]
    hba: list[dict[str, Any]] | None = None
    md5_roles: int | None = None
    roles: dict[str, dict[str, Any] | None] = field(default_factory=dict)   # kind -> role_facts
    role_tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    job_keys: list[tuple[str, list[str]]] | None = None
    event_keys: list[tuple[str, list[str]]] | None = None
    unreadable: dict[str, str] = field(default_factory=dict)


@dataclass
class Snapshot:
    schema: str
    role_prefix: str
    database: Database
    local: LocalFacts
    responses: list[Response]
    limits: dict[str, int]                     # upload limit name -> bytes in effect
    formatters: dict[str, type[logging.Formatter]]
    secret_pattern: str
    sample: int
    cache_rules: str | None = None


def read_database(dsn: str, schema: str, *, role_prefix: str, sample: int,
                  since: timedelta = timedelta(days=1)) -> Database:
    """The catalogue facts of one database, read through one connection."""
    validate_schema(schema)
    with connect(dsn, autocommit=True, connect_timeout=10) as conn:
        try:
            return _read(conn, dsn, schema, role_prefix, sample, since)
        except psycopg.OperationalError as exc:
            raise unavailable(dsn, exc) from None


def _read(conn: psycopg.Connection, dsn: str, schema: str, prefix: str, sample: int,
          since: timedelta) -> Database:
    unreadable: dict[str, str] = {}

    def rows(name: str, params: Mapping[str, Any] | None = None, *, schema_sql: bool = False) -> list[dict] | None:
        text = render(QUERIES[name], schema) if schema_sql else QUERIES[name]
        try:
            with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
                cur.execute("SET LOCAL statement_timeout = '10s'")
                return cur.execute(text, params).fetchall()
        except psycopg.OperationalError:
            raise
        except psycopg.Error as exc:
            unreadable[name] = _first_line(exc)
            return None

    info = rows("connection")[0]
    me = info["role"]
    names = role_names(prefix)
    wanted = [me, *names.values()]
    facts = {r["name"]: r for r in rows("role_facts", dict(roles=wanted, schema=schema,
                                                           dangerous=list(DANGEROUS_ROLES))) or []}
    privileges: dict[str, list[dict]] = {}
    for row in rows("table_privileges", dict(roles=wanted, schema=schema)) or []:
        privileges.setdefault(row["role"], []).append(row)
    settings = {r["name"]: r["setting"] for r in rows("settings", dict(names=list(SERVER_SETTINGS))) or []}
    ssl_rows = rows("ssl")
    md5 = rows("md5_passwords")
    host = conn.info.host
    db = Database(
        name=describe(dsn), host=host, via=_via(host), connection=info, role=facts.get(me),
        tables=privileges.get(me, []), public=rows("public_privileges", dict(schema=schema)) or [],
        ssl=ssl_rows[0] if ssl_rows else None, settings=settings, hba=rows("hba_rules"),
        md5_roles=md5[0]["roles"] if md5 else None,
        roles={kind: facts.get(name) for kind, name in names.items()},
        role_tables={kind: privileges.get(name, []) for kind, name in names.items()},
        unreadable=unreadable,
    )
    if facts.get(me) and facts[me]["schema_exists"]:
        jobs = rows("recent_job_keys", dict(sample=sample), schema_sql=True)
        events = rows("recent_event_keys", dict(sample=sample, since=since), schema_sql=True)
        db.job_keys = None if jobs is None else [(r["task"], r["keys"]) for r in jobs]
        db.event_keys = None if events is None else [(r["kind"], r["keys"]) for r in events]
    else:
        unreadable.setdefault("recent_job_keys", f"the {schema!r} schema does not exist in this database")
        unreadable.setdefault("recent_event_keys", f"the {schema!r} schema does not exist in this database")
    return db


def _via(host: str | None) -> str:
    if not host or host.startswith("/") or host.startswith("@"):
        return "socket"
    if host == "localhost":
        return "loopback"
    try:
        return "loopback" if ipaddress.ip_address(host).is_loopback else "network"
    except ValueError:
        return "network"


def _first_line(exc: BaseException) -> str:
    text = scrub(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
