"""Attacks through the change file: text that runs SQL the parser did not see, and
"SELECT only" queries that act outside their read-only transaction."""

from __future__ import annotations

import psycopg
import pytest

from ..helpers import scalar
from .conftest import make_events, pgsteady, write_change

# pglast reads two string literals; a server with standard_conforming_strings off
# reads 'x\', ' as one, ends the statement at the ')' and runs what follows.
HIDDEN = "IN ('x\\\\', ') ; COMMIT; CREATE TABLE escaped (x int); -- ')"


@pytest.fixture
def lax_dsn(dsn):
    """A database whose sessions lex backslashes the old way."""
    make_events(dsn, 2000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        name = conn.info.dbname
        conn.execute(psycopg.sql.SQL("ALTER DATABASE {} SET standard_conforming_strings = off").format(
            psycopg.sql.Identifier(name)))
    return dsn


def test_sql_hidden_in_an_index_predicate_does_not_run_during_lint(lax_dsn, tmp_path):
    path = write_change(tmp_path, "pred", f"CREATE INDEX CONCURRENTLY events_kind_p ON events (kind) WHERE kind {HIDDEN}")
    r = pgsteady("change", "lint", str(path), dsn=lax_dsn)
    assert scalar(lax_dsn, "SELECT to_regclass('escaped')") is None, r.stdout + r.stderr
    assert r.returncode in (0, 1), r.stderr


def test_sql_hidden_in_a_query_does_not_run_during_plan(lax_dsn, tmp_path):
    query = f'''
[[queries]]
name = "hidden"
sql = "SELECT id FROM events WHERE kind {HIDDEN}"
repeat = 1
'''
    path = write_change(tmp_path, "q", "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)", queries=query)
    r = pgsteady("change", "plan", str(path), dsn=lax_dsn)
    assert scalar(lax_dsn, "SELECT to_regclass('escaped')") is None, r.stdout + r.stderr
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("sql, what", [
    ("SELECT pg_terminate_backend(pid) FROM pg_stat_activity", "pg_terminate_backend"),
    ("SELECT * FROM dblink_exec('dbname=x', 'DROP TABLE events') AS t(x text)", "dblink_exec"),
    ("SELECT * INTO stolen FROM events", "INTO"),
    ("SELECT * FROM events FOR UPDATE", "locking clause"),
    ("WITH gone AS (DELETE FROM events RETURNING id) SELECT * FROM gone", "INSERT/UPDATE/DELETE"),
    ("SELECT query_to_xml('DROP TABLE events', true, true, '')", "query_to_xml"),
    ("SELECT 1; SELECT pg_terminate_backend(1)", "one statement"),
])
def test_queries_that_act_outside_a_read_only_select_are_refused_when_the_file_is_read(dsn, tmp_path, sql, what):
    make_events(dsn, 100)
    query = f'''
[[queries]]
name = "bad"
sql = "{sql}"
'''
    path = write_change(tmp_path, "bad", "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)", queries=query)
    r = pgsteady("change", "plan", str(path), dsn=dsn)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and what in lines[0], r.stderr
    assert scalar(dsn, "SELECT count(*) FROM events") == 100
    assert scalar(dsn, "SELECT to_regclass('stolen')") is None
