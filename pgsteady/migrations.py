"""Create and upgrade the pgsteady schema.

Two paths must give the same schema, and a test proves they do:

- a fresh install runs ``sql/schema.sql`` (the whole current schema) and
  records every migration as applied;
- an existing install runs the numbered ``sql/migrations/NNN_name.sql`` files
  it has not applied yet, in order.

Everything happens in one transaction under an advisory lock per schema, so
two processes migrating at once apply each migration exactly once, and a
failed migration leaves the schema as it was.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

import psycopg
from psycopg import sql

from .database import connect, scrub
from .errors import PgsteadyError, SchemaNotReady
from .queries import render, validate_schema

_FILE = re.compile(r"^(\d{3})_(\w+)\.sql$")
EVENT_DAYS_AHEAD = 7


class MigrationFailed(PgsteadyError):
    """The database refused a migration; nothing was changed."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    text: str


def available() -> list[Migration]:
    folder = resources.files("pgsteady") / "sql" / "migrations"
    found = []
    for entry in folder.iterdir():
        m = _FILE.match(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text()))
    found.sort(key=lambda mig: mig.version)
    versions = [mig.version for mig in found]
    if versions != list(range(1, len(found) + 1)):
        raise RuntimeError(f"migrations must be numbered 001, 002, ... without gaps; found {versions}")
    return found


def latest_version() -> int:
    return available()[-1].version


def applied_version(conn: psycopg.Connection, schema: str) -> int:
    """The newest migration applied in this database, 0 when none."""
    exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", [f"{validate_schema(schema)}.migrations"]).fetchone()[0]
    if not exists:
        return 0
    q = sql.SQL("SELECT coalesce(max(version), 0) FROM {}.migrations").format(sql.Identifier(schema))
    return conn.execute(q).fetchone()[0]


def check_current(conn: psycopg.Connection, schema: str) -> None:
    """Raise SchemaNotReady unless the schema is at the version this code needs."""
    have, want = applied_version(conn, schema), latest_version()
    if have != want:
        verb = "has not been created" if have == 0 else f"is at version {have}, this pgsteady needs {want}"
        if have > want:
            verb = f"is at version {have}, newer than this pgsteady ({want}); upgrade pgsteady"
            raise SchemaNotReady(f"the {schema!r} schema {verb}")
        raise SchemaNotReady(f"the {schema!r} schema {verb}: run `pgsteady migrate`")


def migrate(dsn: str, schema: str = "pgsteady", *, fresh_from: str = "schema") -> list[int]:
    """Bring the schema up to date; returns the versions applied now.

    ``fresh_from="migrations"`` installs a fresh schema by replaying every
    migration instead of running schema.sql (used by the test that compares
    the two).
    """
    validate_schema(schema)
    with connect(dsn) as conn:
        try:
            return _migrate(conn, schema, fresh_from)
        except psycopg.errors.InsufficientPrivilege as exc:
            raise _refused(conn, schema, exc) from None
        except psycopg.Error as exc:
            raise MigrationFailed(f"migrating the {schema!r} schema failed ({_first_line(exc)}); "
                                  "nothing was changed (one transaction): fix the cause and run it again") from None


def _migrate(conn: psycopg.Connection, schema: str, fresh_from: str) -> list[int]:
    migrations = available()
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"pgsteady.migrate:{schema}"])
        # CREATE SCHEMA IF NOT EXISTS checks CREATE on the database even when
        # the schema exists, so a role that owns its schema but may not create
        # schemas would be refused: create it only when it is missing.
        if conn.execute("SELECT to_regnamespace(%s) IS NULL", [schema]).fetchone()[0]:
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {}.migrations ("
                " version integer PRIMARY KEY, name text NOT NULL,"
                " applied_at timestamptz NOT NULL DEFAULT now())"
            ).format(sql.Identifier(schema))
        )
        have = applied_version(conn, schema)
        if have > migrations[-1].version:
            raise SchemaNotReady(
                f"the {schema!r} schema is at version {have}, newer than this pgsteady "
                f"({migrations[-1].version}); upgrade pgsteady"
            )
        if have == 0 and fresh_from == "schema":
            text = (resources.files("pgsteady") / "sql" / "schema.sql").read_text()
            conn.execute(render(text, schema))
            todo, run = migrations, False
        else:
            todo, run = [m for m in migrations if m.version > have], True
        record = sql.SQL("INSERT INTO {}.migrations (version, name) VALUES (%s, %s)").format(sql.Identifier(schema))
        for mig in todo:
            if run:
                conn.execute(render(mig.text, schema))
            conn.execute(record, [mig.version, mig.name])
        conn.execute(
            sql.SQL("SELECT {}.ensure_event_partitions(%s)").format(sql.Identifier(schema)), [EVENT_DAYS_AHEAD]
        )
    return [m.version for m in todo]


def _first_line(exc: BaseException) -> str:
    text = scrub(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _refused(conn: psycopg.Connection, schema: str, exc: psycopg.Error) -> MigrationFailed:
    """A missing privilege, named with the GRANT (or the owner change) that fixes it."""
    conn.rollback()
    role, db, owner = conn.execute(
        "SELECT current_user, current_database(), (SELECT nspowner::regrole::text FROM pg_namespace"
        " WHERE nspname = %s)", [schema]).fetchone()
    ident = lambda name: sql.Identifier(name).as_string(conn)  # noqa: E731
    if owner is None:
        fix = (f"GRANT CREATE ON DATABASE {ident(db)} TO {ident(role)}; or, as an administrator, "
               f"CREATE SCHEMA {ident(schema)} AUTHORIZATION {ident(role)}")
    elif owner != role:
        fix = f"ALTER SCHEMA {ident(schema)} OWNER TO {ident(role)}, or migrate as {owner}"
    else:
        fix = "a privilege on an object of the schema is missing; migrate as the role that owns the schema"
    return MigrationFailed(f"migrating the {schema!r} schema as {role} was refused ({_first_line(exc)}); "
                           f"nothing was changed. Fix: {fix}")
