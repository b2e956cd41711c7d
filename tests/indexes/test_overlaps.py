"""find_overlaps: which existing index a proposed one duplicates, is covered by, or covers."""

from __future__ import annotations

import psycopg
import pytest

from pgsteady.errors import ConfigError
from pgsteady.indexes import find_overlaps
from pgsteady.indexes import ddl
from pgsteady.indexes.catalog import load_index, truncate_name
from pgsteady.indexes.queries import parse


@pytest.fixture
def doc_dsn(empty_dsn):
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE doc (id int PRIMARY KEY, a int, b int, email text, code text COLLATE "C",
                              tags text[], deleted_at timestamptz);
            CREATE INDEX doc_a_idx ON doc (a);
            CREATE INDEX doc_ab_idx ON doc (a, b);
            CREATE INDEX doc_email_live ON doc (lower(email)) WHERE deleted_at IS NULL;
            CREATE INDEX doc_tags_gin ON doc USING gin (tags);
            CREATE INDEX doc_code_idx ON doc (code);
            CREATE TABLE "Odd Table" ("Col A" int);
            CREATE INDEX odd_idx ON "Odd Table" ("Col A");
        """)
    return empty_dsn


def kinds(overlaps):
    return {(o.kind, o.index) for o in overlaps}


def test_column_list_proposals(doc_dsn):
    assert kinds(find_overlaps(doc_dsn, "doc", ["a"])) == {
        ("duplicate", "public.doc_a_idx"), ("covered", "public.doc_ab_idx")}
    assert kinds(find_overlaps(doc_dsn, "doc", ["a", "b", "id"])) == {
        ("covers", "public.doc_a_idx"), ("covers", "public.doc_ab_idx")}
    assert find_overlaps(doc_dsn, "doc", ["b"]) == []
    # The proposal keeps the column's collation, so it matches the existing index.
    assert kinds(find_overlaps(doc_dsn, "public.doc", ["code"])) == {("duplicate", "public.doc_code_idx")}
    assert kinds(find_overlaps(doc_dsn, '"Odd Table"', ["Col A"])) == {("duplicate", 'public.odd_idx')}


def test_statement_and_tail_proposals(doc_dsn):
    stmt = "CREATE INDEX CONCURRENTLY IF NOT EXISTS new_idx ON public.doc (lower(email)) WHERE deleted_at IS NULL;"
    assert kinds(find_overlaps(doc_dsn, spec=stmt)) == {("duplicate", "public.doc_email_live")}
    # Same expression, no predicate: a different index.
    assert find_overlaps(doc_dsn, "doc", "(lower(email))") == []
    assert kinds(find_overlaps(doc_dsn, "doc", "USING gin (tags)")) == {("duplicate", "public.doc_tags_gin")}
    # A unique index on the same columns adds a constraint: it makes the plain one redundant.
    # A unique index is never "covered": the longer index does not enforce it.
    assert kinds(find_overlaps(doc_dsn, spec="create unique index on doc (a)")) == {("covers", "public.doc_a_idx")}


def test_bad_proposals_are_one_line_errors_and_leave_nothing_behind(doc_dsn):
    with psycopg.connect(doc_dsn, autocommit=True) as conn:
        with pytest.raises(ConfigError, match='does not build on public.doc: column "nope" does not exist'):
            find_overlaps(conn, "doc", ["nope"])
        with pytest.raises(ConfigError, match="no table 'missing'"):
            find_overlaps(conn, "missing", ["a"])
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert conn.execute("SELECT to_regclass('pg_temp.pgsteady_proposed')").fetchone()[0] is None
        assert find_overlaps(conn, "doc", ["a"])  # the connection is still usable


def test_undo_of_a_drop_rebuilds_the_same_definition(empty_dsn):
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE u (a int, b int, c text)")
        conn.execute("CREATE UNIQUE INDEX u_key ON u (a DESC) INCLUDE (b) WHERE c IS NOT NULL")
        index = load_index(conn, conn.execute("SELECT 'u_key'::regclass::oid").fetchone()[0])
        undo = ddl.recreate(index)
        assert undo.startswith("CREATE UNIQUE INDEX CONCURRENTLY u_key ON public.u")
        conn.execute(ddl.drop(index))
        conn.execute(undo)
        assert conn.execute("SELECT pg_get_indexdef('u_key'::regclass)").fetchone()[0] == index.indexdef


def test_generated_names_fit_in_63_bytes_without_splitting_a_character():
    name = truncate_name("é" * 40, "_idx")
    assert len(name.encode()) <= 63 and name.endswith("_idx")
    assert truncate_name("short") == "short"


def test_query_files_parse_by_name_and_drop_comments():
    text = "-- preamble %(x)s\n-- name: one\n-- about %(y)s\nSELECT 1;\n-- name: two\nSELECT %(z)s\n"
    assert parse(text) == {"one": "SELECT 1", "two": "SELECT %(z)s"}
    with pytest.raises(ValueError, match="defined twice"):
        parse("-- name: a\nSELECT 1\n-- name: a\nSELECT 2\n")


@pytest.mark.parametrize("tail", [
    "(a); COMMIT; CREATE TABLE escaped (x int)",
    "(a) WHERE true; COMMIT; CREATE TABLE escaped (x int); --",
])
def test_commit_in_a_proposal_cannot_escape_the_rolled_back_transaction(doc_dsn, tail):
    with pytest.raises(ConfigError):
        find_overlaps(doc_dsn, "doc", tail)
    with pytest.raises(ConfigError):
        find_overlaps(doc_dsn, spec=f"CREATE INDEX p ON doc {tail}")
    with psycopg.connect(doc_dsn) as conn:
        assert conn.execute("SELECT to_regclass('escaped')").fetchone()[0] is None


ESCAPE = "(a) WHERE email IN ('x\\', ') ; COMMIT; CREATE TABLE escaped (x int); -- ')"


def test_a_proposal_is_lexed_as_the_parser_read_it_even_with_standard_conforming_strings_off(doc_dsn):
    # pglast reads two string literals; a server with standard_conforming_strings off
    # would read 'x\', ' as one, end the statement at the ')' and run the COMMIT and the
    # CREATE TABLE hidden in the second (the regex-and-simple-protocol version did).
    with psycopg.connect(doc_dsn, autocommit=True) as conn:
        conn.execute("SET standard_conforming_strings = off")
        assert find_overlaps(conn, "doc", ESCAPE) == []
        assert conn.execute("SHOW standard_conforming_strings").fetchone()[0] == "off"  # pinned locally only
        assert conn.execute("SELECT to_regclass('escaped')").fetchone()[0] is None
