"""The rehearsal of a migration measures each statement on a copy: time, locks held, rewrite."""

from __future__ import annotations

import psycopg

from pgsteady.changes import files
from pgsteady.changes.migration_rehearse import rehearse
from pgsteady.queries import for_schema

from ..helpers import scalar
from .conftest import write_change

MIGRATION = """\
ALTER TYPE mood RENAME TO feeling;
ALTER TABLE posts ADD COLUMN views bigint DEFAULT 0;
ALTER TABLE posts ALTER COLUMN n TYPE bigint;
ALTER TABLE posts ADD CONSTRAINT posts_n_positive CHECK (n > 0) NOT VALID;
ALTER TABLE posts VALIDATE CONSTRAINT posts_n_positive;
CREATE INDEX CONCURRENTLY posts_views_idx ON posts (views);
ALTER TYPE mood ADD VALUE 'calm' AFTER 'sad';
ALTER TABLE public.posts RENAME COLUMN title TO headline"""


def make_posts(dsn: str, rows: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TYPE mood AS ENUM ('sad', 'happy')")
        conn.execute("CREATE TABLE posts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int NOT NULL, "
                     "title text NOT NULL)")
        conn.execute("INSERT INTO posts (n, title) SELECT g, 'post ' || g FROM generate_series(1, %(rows)s) g",
                     {"rows": rows})
        conn.execute("CREATE INDEX posts_n_idx ON posts (n)")
        conn.execute("VACUUM ANALYZE posts")


def test_each_statement_is_measured_on_the_copy_and_production_is_untouched(dsn, tmp_path):
    make_posts(dsn, 20_000)
    change = files.load(write_change(tmp_path, "m", MIGRATION))
    with psycopg.connect(dsn, autocommit=True) as conn:
        figures = rehearse(change, conn, for_schema("pgsteady"), dsn)
    assert figures["copied_rows"] == 20_000
    assert figures["statements"][0]["status"] == "not rehearsed"  # a type: the copy shares it
    by = {s["index"] - 1: s for s in figures["statements"][1:]}
    assert [s["status"] for s in figures["statements"][1:]] == ["done"] * 5 + ["not rehearsed", "done"]

    add = by[1]  # a constant default: a short ACCESS EXCLUSIVE, no rewrite (PostgreSQL 11+)
    assert add["strongest"] == "AccessExclusiveLock" and add["blocks"] == "every read and write"
    assert add["rewrote"] == [] and add["held_seconds"] >= add["seconds"] > 0
    assert any(lock["relation"] == "public.posts" and lock["mode"] == "AccessExclusiveLock" and
               lock["seen_by"] in ("self", "sampler") for lock in add["locks"])

    retype = by[2]  # int to bigint: the table and its indexes are written anew
    assert retype["rewrote"] == ["public.posts"] and retype["strongest"] == "AccessExclusiveLock"
    assert "public.posts_n_idx" in retype["rebuilt_indexes"] and "public.posts_pkey" in retype["rebuilt_indexes"]

    validate = by[4]  # the safe half of a CHECK: reads and writes go on
    assert validate["strongest"] == "ShareUpdateExclusiveLock" and validate["rewrote"] == []
    assert "reads and writes go on" in validate["blocks"]

    assert by[5]["seconds"] > 0 and by[5]["rewrote"] == []  # CONCURRENTLY: outside a transaction, sampled
    assert "shares with the database" in by[6]["why"]  # the enum type is not copied: not run on it
    assert any(lock["relation"] == "public.posts" for lock in by[7]["locks"])  # qualified names re-aimed

    # Production is as it was, and the copy is gone.
    assert scalar(dsn, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'posts'") == 3
    assert scalar(dsn, "SELECT data_type FROM information_schema.columns "
                       "WHERE table_name = 'posts' AND column_name = 'n'") == "integer"
    assert scalar(dsn, "SELECT count(*) FROM pg_enum WHERE enumlabel = 'calm'") == 0
    assert scalar(dsn, "SELECT to_regtype('mood') IS NOT NULL AND to_regtype('feeling') IS NULL")
    assert scalar(dsn, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgsteady_rehearsal%%'") == 0


def test_a_statement_that_fails_on_the_copy_stops_the_rehearsal_with_its_error(dsn, tmp_path):
    make_posts(dsn, 100)
    change = files.load(write_change(tmp_path, "bad", "ALTER TABLE posts ADD COLUMN views bigint;\n"
                                                      "ALTER TABLE posts ADD CONSTRAINT n_big CHECK (n > 1000);\n"
                                                      "ALTER TABLE posts DROP COLUMN views"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        figures = rehearse(change, conn, for_schema("pgsteady"), dsn)
    assert [s["status"] for s in figures["statements"]] == ["done", "failed"]
    assert "violated by some row" in figures["statements"][1]["error"]
    assert scalar(dsn, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgsteady_rehearsal%%'") == 0


def test_a_statement_naming_an_object_outside_the_copy_is_not_run(dsn, tmp_path):
    make_posts(dsn, 10)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE VIEW recent AS SELECT * FROM posts")
        conn.execute("CREATE TABLE parts (at int) PARTITION BY RANGE (at)")
    change = files.load(write_change(tmp_path, "outside", "DROP TABLE parts;\nDROP VIEW recent;\nTRUNCATE parts;\n"
                                                          "CREATE TABLE public.made_here (id bigint);\n"
                                                          "CREATE SEQUENCE public.made_seq;\n"
                                                          "VACUUM FULL;\nCLUSTER;\nREINDEX SCHEMA public;\n"
                                                          "COMMENT ON VIEW recent IS 'x'"))
    with psycopg.connect(dsn, autocommit=True) as conn:
        figures = rehearse(change, conn, for_schema("pgsteady"), dsn)
    statuses = [s["status"] for s in figures["statements"]]
    assert statuses == ["not rehearsed"] * 3 + ["done", "done"] + ["not rehearsed"] * 4, figures["statements"]
    assert "every table of the database" in figures["statements"][5]["why"]
    assert "public.parts" in figures["statements"][0]["why"]
    assert scalar(dsn, "SELECT to_regclass('parts') IS NOT NULL AND to_regclass('recent') IS NOT NULL")
    # New objects named in public were made among the copies, and went with them.
    assert scalar(dsn, "SELECT to_regclass('public.made_here') IS NULL AND to_regclass('public.made_seq') IS NULL")
