"""Test fixtures: every test gets its own real PostgreSQL database.

The server is PGSTEADY_TEST_DSN when set (CI may point it at a system server),
else an embedded PostgreSQL kept in a folder under the system temp dir, so the
suite runs on a machine with Python and nothing else. A template database is
migrated once per session; each test clones it (CREATE DATABASE ... TEMPLATE),
which costs tens of milliseconds and isolates tests completely.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import uuid
from pathlib import Path

import psycopg
import pytest

from pgsteady.database import with_dbname

ROOT = Path(__file__).resolve().parent.parent


def _test_home() -> Path:
    tag = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
    return Path(tempfile.gettempdir()) / f"pgsteady-test-{tag}"


@pytest.fixture(scope="session")
def server_dsn() -> str:
    """DSN of the server the tests use, pointing at its maintenance database."""
    dsn = os.environ.get("PGSTEADY_TEST_DSN")
    if dsn:
        return dsn
    from pgsteady import embedded

    return with_dbname(embedded.ensure_running(home=_test_home(), admin=True), "postgres")


def _create_db(server_dsn: str, name: str, template: str | None = None) -> str:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        q = psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(name))
        if template:
            q = q + psycopg.sql.SQL(" TEMPLATE {}").format(psycopg.sql.Identifier(template))
        conn.execute(q)
    return with_dbname(server_dsn, name)


def _drop_db(server_dsn: str, name: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(
            psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(psycopg.sql.Identifier(name))
        )


@pytest.fixture(scope="session")
def template_db(server_dsn: str):
    """A migrated database to clone; name is unique per test session."""
    from pgsteady.migrations import migrate

    name = f"pgsteady_tpl_{os.getpid()}"
    _drop_db(server_dsn, name)
    dsn = _create_db(server_dsn, name)
    migrate(dsn)
    yield name
    _drop_db(server_dsn, name)


@pytest.fixture
def empty_dsn(server_dsn: str):
    """A fresh, empty database (no pgsteady schema)."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = _create_db(server_dsn, name)
    yield dsn
    _drop_db(server_dsn, name)


@pytest.fixture
def dsn(server_dsn: str, template_db: str):
    """A fresh database with the pgsteady schema migrated."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    dsn = _create_db(server_dsn, name, template=template_db)
    yield dsn
    _drop_db(server_dsn, name)


@pytest.fixture
def conn(dsn: str):
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


@pytest.fixture
def app(dsn: str):
    """An App on the test database; tests register their own tasks on it."""
    from pgsteady import App

    a = App(dsn=dsn, release="test-release")
    yield a
    a.close()
