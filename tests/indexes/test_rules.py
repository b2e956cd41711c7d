"""One owner per rule: the checks that share a question give one answer in one run."""

from __future__ import annotations

import psycopg

from pgsteady.indexes import check

from .conftest import create_db, drop_db


def test_partial_and_gin_indexes_on_fk_columns_neither_serve_the_fk_nor_escape_unused_in_one_run(server_dsn):
    name, dsn = create_db(server_dsn)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("""
                CREATE TABLE author (id int PRIMARY KEY);
                INSERT INTO author SELECT g FROM generate_series(1, 10) g;
                CREATE TABLE post (id int PRIMARY KEY, author_id int REFERENCES author (id),
                                   tag_ids int[], live boolean);
                CREATE TABLE tagging (tag int REFERENCES author (id), extra int);
                INSERT INTO post SELECT g, g % 10 + 1, ARRAY[g], g % 2 = 0 FROM generate_series(1, 5000) g;
                INSERT INTO tagging SELECT g % 10 + 1, g FROM generate_series(1, 5000) g;
                CREATE INDEX post_author_live ON post (author_id) WHERE live;
                CREATE EXTENSION IF NOT EXISTS btree_gin;
                CREATE INDEX tagging_tag_gin ON tagging USING gin (tag);
                ANALYZE;
            """)
        report = check(dsn, unused_min_bytes=0)
        missing = {f.objects[0] for f in report.by_check("fk_without_index")}
        unused = {f.objects[0] for f in report.by_check("unused_index")}
        # Neither index serves its foreign key: both say so, in the same report.
        assert {"public.post", "public.tagging"} <= missing, missing
        assert {"public.post_author_live", "public.tagging_tag_gin"} <= unused, unused
    finally:
        drop_db(server_dsn, name)
