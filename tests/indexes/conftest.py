"""Fixtures for the index checks: a database planted with one of every problem.

Planting is done once per module (building the stats it relies on takes a
second); tests that change the planted database get their own copy through
``planted_dsn_fresh``. Statistics are flushed with pg_stat_force_next_flush()
so that the counters the checks read are there without sleeping.
"""

from __future__ import annotations

import time
import uuid

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgsteady.database import with_dbname
from pgsteady.indexes import Thresholds

# Small enough for the planted tables (a few hundred kB), large enough that
# the tiny tables of the other plants stay below them.
SMALL = Thresholds(
    unused_min_bytes=200 * 1024,
    bloat_min_bytes=200 * 1024,
    bloat_ratio=0.5,
    null_fraction=0.8,
    seq_scan_min_bytes=64 * 1024,
    min_seq_scans=8,
    shape_min_rows=50,
)

SCHEMA_SQL = """
CREATE TABLE inv (id int, a int, b int);
CREATE INDEX inv_a_idx ON inv (a);
CREATE INDEX inv_b_idx ON inv (b);

CREATE TABLE dup (a int, b text);
CREATE INDEX dup_a_idx ON dup (a);
CREATE INDEX dup_a_copy_idx ON dup (a);
CREATE TABLE dupu (a int CONSTRAINT dupu_a_key UNIQUE);
CREATE INDEX dupu_a_plain ON dupu (a);

CREATE TABLE red (a int, b int, c int);
CREATE INDEX red_a_idx ON red (a);
CREATE INDEX red_ab_idx ON red (a, b);
CREATE UNIQUE INDEX red_c_key ON red (c);
CREATE INDEX red_ca_idx ON red (c, a);

CREATE TABLE parent (id int PRIMARY KEY);
INSERT INTO parent SELECT g FROM generate_series(1, 10) g;
CREATE TABLE child (id int PRIMARY KEY, parent_id int REFERENCES parent (id));

CREATE TABLE unu (id int PRIMARY KEY, val int, used int, parent_id int REFERENCES parent (id));
INSERT INTO unu SELECT g, g, g, g % 10 + 1 FROM generate_series(1, 20000) g;
CREATE INDEX unu_val_idx ON unu (val);
CREATE INDEX unu_used_idx ON unu (used);
CREATE INDEX unu_parent_idx ON unu (parent_id, val);

CREATE TABLE bl (v int);
INSERT INTO bl SELECT g FROM generate_series(1, 20000) g;
CREATE INDEX bl_v_idx ON bl (v);
DELETE FROM bl WHERE v % 10 <> 0;

CREATE TABLE nul (a int, b int);
INSERT INTO nul SELECT CASE WHEN g % 20 = 0 THEN g END, g FROM generate_series(1, 2000) g;
CREATE INDEX nul_a_idx ON nul (a);

CREATE TABLE arr (id int, tags text[]);
INSERT INTO arr SELECT g, ARRAY['t' || g % 7] FROM generate_series(1, 100) g;
CREATE INDEX arr_tags_idx ON arr (tags);

CREATE TABLE flags (id int, done boolean NOT NULL);
INSERT INTO flags SELECT g, g % 20 = 0 FROM generate_series(1, 1000) g;
CREATE INDEX flags_done_idx ON flags (done);

CREATE TABLE seqt (id int, payload text);
INSERT INTO seqt SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g;
"""

# What the planted database must report: (check, first object).
EXPECTED = {
    ("invalid_index", "public.inv_dead_idx"),
    ("invalid_index", "public.inv_a_idx_ccnew"),
    ("invalid_index", "public.inv_b_idx_ccold"),
    ("duplicate_index", "public.dup_a_copy_idx"),
    ("duplicate_index", "public.dupu_a_plain"),
    ("redundant_index", "public.red_a_idx"),
    ("unused_index", "public.unu_val_idx"),
    ("fk_without_index", "public.child"),
    ("bloated_index", "public.bl_v_idx"),
    ("mostly_null_index", "public.nul_a_idx"),
    ("array_btree_index", "public.arr_tags_idx"),
    ("boolean_index", "public.flags_done_idx"),
    ("seq_scan_table", "public.seqt"),
}


def create_db(server_dsn: str) -> tuple[str, str]:
    name = f"ix_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name, with_dbname(server_dsn, name)


def drop_db(server_dsn: str, name: str) -> None:
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def failed_builds(dsn: str, table: str, statements: list[str]) -> None:
    """Run each build while another transaction writes to ``table``, so it times out INVALID."""
    with psycopg.connect(dsn) as blocker, psycopg.connect(dsn, autocommit=True) as builder:
        blocker.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(sql.Identifier(table)))
        builder.execute("SET lock_timeout = '100ms'")
        for statement in statements:
            with pytest.raises(psycopg.errors.LockNotAvailable):
                builder.execute(statement)
        blocker.rollback()


def flush_stats(conn: psycopg.Connection) -> None:
    """Make this session's counters visible to other sessions now (PostgreSQL 15+)."""
    conn.execute("SELECT pg_stat_force_next_flush()")
    conn.execute("SELECT 1")


def plant(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SCHEMA_SQL)
        conn.execute("VACUUM bl")
        conn.execute("ANALYZE")
    failed_builds(dsn, "inv", [
        "CREATE INDEX CONCURRENTLY inv_dead_idx ON inv (id)",
        "REINDEX INDEX CONCURRENTLY inv_a_idx",  # leaves inv_a_idx_ccnew
        # A _ccold leftover needs a failure in REINDEX's last phase, which
        # cannot be provoked reliably; an INVALID index of that name is what
        # such a failure leaves, next to the valid original.
        "CREATE INDEX CONCURRENTLY inv_b_idx_ccold ON inv (b)",
    ])
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SELECT * FROM unu WHERE used = 5")
        conn.execute("SELECT * FROM bl WHERE v = 10")
        conn.execute("RESET enable_seqscan")
        for _ in range(10):
            conn.execute("SELECT count(*) FROM seqt WHERE payload LIKE 'y%'")
        flush_stats(conn)


@pytest.fixture(scope="module")
def planted_dsn(server_dsn: str):
    name, dsn = create_db(server_dsn)
    plant(dsn)
    yield dsn
    drop_db(server_dsn, name)


@pytest.fixture
def planted_dsn_fresh(server_dsn: str):
    name, dsn = create_db(server_dsn)
    plant(dsn)
    yield dsn
    drop_db(server_dsn, name)


@pytest.fixture
def role_dsn(server_dsn: str, empty_dsn: str):
    """A factory: a DSN for ``dsn`` (default: the empty database) as a fresh ordinary role."""
    made: list[tuple[str, str]] = []

    def make(dsn: str = empty_dsn) -> str:
        role = f"ix_role_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        made.append((role, dsn))
        return make_conninfo(dsn, user=role)

    yield make
    for role, dsn in made:
        # Grants given in a test must go before the role can; DROP OWNED
        # works per database.
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
