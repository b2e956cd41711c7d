"""The one catalogue reader's probes that several parts share, against a real server."""

from __future__ import annotations

import psycopg
from psycopg import sql

from pgsteady.indexes import probes
from pgsteady.indexes.queries import QUERIES


def test_one_extension_probe_answers_for_every_extension(empty_dsn):
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        assert probes.extension(conn, "plpgsql") == {"available": True, "schema": "pg_catalog"}
        assert probes.extension(conn, "no_such_extension") == {"available": False, "schema": None}
        assert probes.statements_schema(conn) is None  # a fresh database: not installed
        assert probes.statements_naming(conn, "feed") is None


def test_statements_naming_reads_pg_stat_statements_in_its_schema(empty_dsn):
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        if not probes.extension(conn, "pg_stat_statements")["available"]:
            import pytest

            pytest.skip("pg_stat_statements is not available on this server")
        conn.execute("CREATE SCHEMA ext")
        conn.execute("CREATE EXTENSION pg_stat_statements SCHEMA ext")  # not on the search_path
        assert probes.statements_schema(conn) == "ext"
        # The text is valid wherever the extension lives (EXPLAIN plans it without reading it) …
        query = sql.SQL(QUERIES["statements_naming"]).format(pgss=sql.Identifier("ext"))
        conn.execute(sql.SQL("EXPLAIN ") + query, {"pattern": "%feed%", "writes": True, "limit": 5})
        preloaded = "pg_stat_statements" in conn.execute("SHOW shared_preload_libraries").fetchone()[0]
        found = probes.statements_naming(conn, "feed", writes=True)
        if not preloaded:
            assert found is None  # installed but not loaded: the view refuses to be read
            return
        conn.execute("CREATE TABLE feed (id int)")
        for _ in range(3):
            conn.execute("INSERT INTO feed VALUES (1)")
            conn.execute("SELECT count(*) FROM feed")
        found = probes.statements_naming(conn, "feed", writes=True)
        assert found and all(s["query"].lstrip().upper().startswith("INSERT") for s in found)


def test_relation_probes_resolve_names_as_sql_does(empty_dsn):
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute('CREATE TABLE "Posts" (id int PRIMARY KEY, body text); CREATE INDEX posts_body ON "Posts" (body)')
        table = probes.resolve_relation(conn, '"Posts"')
        assert table is not None and table["qualified"] == 'public."Posts"' and table["relkind"] == "r"
        assert probes.resolve_relation(conn, "posts") is None  # unquoted folds to lower case
        facts = probes.table_facts(conn, table["oid"])
        assert facts is not None and facts["name"] == "Posts" and facts["total_bytes"] >= facts["heap_bytes"]
        assert [i["name"] for i in probes.table_indexes(conn, table["oid"])] == ["Posts_pkey", "posts_body"]
        index = probes.resolve_relation(conn, "posts_body")
        state = probes.index_state(conn, index["oid"])
        assert state["table_oid"] == table["oid"] and state["is_valid"] and not state["is_unique"]
        assert probes.column_type(conn, '"Posts"', "body")["shown"] == "text"
        assert probes.relation_bytes(conn, "missing") is None
        assert probes.schema_tables(conn, "public") == [table["oid"]]
        assert {f["relkind"] for f in probes.relation_files(conn, table["oid"])} == {"r", "t", "i"}
        pid, started = probes.backend_self(conn)
        assert pid == conn.info.backend_pid and started is not None
        assert probes.server_facts(conn)["pid"] == pid
