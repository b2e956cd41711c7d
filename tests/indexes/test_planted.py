"""A database with one of every problem reports each, with the right evidence."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgsteady.errors import ConfigError
from pgsteady.indexes import Thresholds, check

from .conftest import EXPECTED, SMALL, create_db, drop_db, flush_stats


@pytest.fixture(scope="module")
def report(planted_dsn):
    return check(planted_dsn, thresholds=SMALL)


def one(report, check_name, obj):
    found = [f for f in report.findings if f.check == check_name and f.objects[0] == obj]
    assert len(found) == 1, f"expected one {check_name} for {obj}, got {[f.to_dict() for f in report.findings]}"
    return found[0]


def test_planted_database_reports_exactly_the_planted_problems(report):
    assert {(f.check, f.objects[0]) for f in report.findings} == EXPECTED


def test_dead_invalid_index_is_an_error_with_drop_and_rebuild(report):
    f = one(report, "invalid_index", "public.inv_dead_idx")
    assert f.severity == "error"
    assert f.evidence["state"] == "dead"
    assert f.evidence["is_valid"] is False
    assert f.fix_statements == ['DROP INDEX CONCURRENTLY "public"."inv_dead_idx";']
    assert f.undo_statements == ["CREATE INDEX CONCURRENTLY inv_dead_idx ON public.inv (id);"]


def test_reindex_leftovers_are_recognised_and_name_the_intact_original(report):
    new = one(report, "invalid_index", "public.inv_a_idx_ccnew")
    old = one(report, "invalid_index", "public.inv_b_idx_ccold")
    assert (new.severity, old.severity) == ("error", "error")
    assert new.evidence["reindex_leftover"] == "_ccnew"
    assert new.evidence["original_index"] == "public.inv_a_idx"
    assert old.evidence["reindex_leftover"] == "_ccold"
    assert old.evidence["original_index"] == "public.inv_b_idx"
    assert "REINDEX CONCURRENTLY" in new.message


def test_duplicate_keeps_the_older_index(report):
    f = one(report, "duplicate_index", "public.dup_a_copy_idx")
    assert f.severity == "warn"
    assert f.objects == ["public.dup_a_copy_idx", "public.dup_a_idx"]
    assert f.evidence["index"]["columns"] == f.evidence["kept"]["columns"] == ["a"]


def test_duplicate_of_a_constraint_index_drops_the_plain_one(report):
    f = one(report, "duplicate_index", "public.dupu_a_plain")
    assert f.objects[1] == "public.dupu_a_key"
    assert f.fix_statements == ['DROP INDEX CONCURRENTLY "public"."dupu_a_plain";']
    assert not any(x.objects[0] == "public.dupu_a_key" for x in report.findings)


def test_redundant_prefix_index_names_its_cover_and_unique_prefix_is_kept(report):
    f = one(report, "redundant_index", "public.red_a_idx")
    assert f.objects == ["public.red_a_idx", "public.red_ab_idx"]
    assert f.evidence["index"]["columns"] == ["a"]
    assert f.evidence["covered_by"]["columns"] == ["a", "b"]
    # red_c_key (c) leads red_ca_idx (c, a) but is unique: never the one to drop.
    assert not any(x.objects[0] == "public.red_c_key" for x in report.findings)


def test_unused_index_evidence_has_scans_size_and_stats_window(report):
    f = one(report, "unused_index", "public.unu_val_idx")
    assert f.evidence["idx_scan"] == 0
    assert f.evidence["scans_by_server"] == {"primary": 0}
    assert f.evidence["index_bytes"] >= SMALL.unused_min_bytes
    assert "stats_reset" in f.evidence and "stats_age" in f.evidence
    # Scanned, primary-key and foreign-key-supporting indexes are not unused.
    reported = {x.objects[0] for x in report.by_check("unused_index")}
    assert reported.isdisjoint({"public.unu_used_idx", "public.unu_pkey", "public.unu_parent_idx"})


def test_foreign_key_without_index_gets_a_concurrent_index(report):
    f = one(report, "fk_without_index", "public.child")
    assert f.objects == ["public.child", "public.parent"]
    assert f.evidence["columns"] == ["parent_id"]
    assert f.evidence["constraint"] == "child_parent_id_fkey"
    assert f.fix_statements == [
        'CREATE INDEX CONCURRENTLY "child_parent_id_idx" ON public.child USING btree ("parent_id");'
    ]
    assert f.undo_statements == ['DROP INDEX CONCURRENTLY "public"."child_parent_id_idx";']


def test_bloat_is_an_estimate_with_its_numbers(report):
    f = one(report, "bloated_index", "public.bl_v_idx")
    assert f.evidence["estimate"] is True
    assert "estimate" in f.message
    assert f.evidence["bloat_ratio"] >= 0.8  # 90% of the rows were deleted
    assert f.evidence["rows"] == 2000
    assert f.evidence["expected_bytes"] < f.evidence["index_bytes"]
    assert f.fix_statements == ['REINDEX INDEX CONCURRENTLY "public"."bl_v_idx";']
    assert f.undo_statements == []


def test_shape_findings(report):
    null = one(report, "mostly_null_index", "public.nul_a_idx")
    assert null.evidence["null_frac"] == pytest.approx(0.95, abs=0.01)
    assert null.fix_statements[0].endswith(" WHERE a IS NOT NULL;")
    arr = one(report, "array_btree_index", "public.arr_tags_idx")
    assert arr.evidence["columns"] == ["tags"]
    assert 'USING gin ("tags")' in arr.fix_statements[0]
    flag = one(report, "boolean_index", "public.flags_done_idx")
    assert flag.evidence["frequencies"]["true"] == pytest.approx(0.05, abs=0.01)
    assert flag.fix_statements[0].endswith('WHERE "done";')
    assert {null.severity, arr.severity, flag.severity} == {"info"}


def test_seq_scanned_table_evidence(report):
    f = one(report, "seq_scan_table", "public.seqt")
    assert f.evidence["seq_scan"] >= 10
    assert f.evidence["idx_scan"] == 0
    assert f.evidence["rows_per_seq_scan"] == 2000
    assert f.evidence["table_bytes"] >= SMALL.seq_scan_min_bytes
    assert f.fix_statements == []


def test_missing_pg_stat_statements_is_reported_as_skipped(report, planted_dsn):
    with psycopg.connect(planted_dsn) as conn:
        installed = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'").fetchone()
    assert installed is None
    reasons = dict(report.skipped)
    assert "not installed" in reasons["heavy_statements"]
    assert report.by_check("seq_scan_table")[0].evidence["statements"] is None


def test_json_is_the_documented_shape(report):
    data = json.loads(report.to_json())
    assert data["format"] == 1
    assert set(data) >= {"database", "server_version", "role", "checked_at", "scope", "thresholds",
                         "summary", "checks_run", "skipped", "findings"}
    assert data["summary"]["error"] == 3
    assert data["summary"]["total"] == len(EXPECTED)
    for finding in data["findings"]:
        assert set(finding) == {"check", "severity", "objects", "message", "evidence", "fix_sql", "undo_sql",
                                "fix_statements", "undo_statements"}
    severities = [f["severity"] for f in data["findings"]]
    assert severities == sorted(severities, key=["error", "warn", "info"].index)


def test_table_and_schema_narrow_the_scope(planted_dsn):
    narrowed = check(planted_dsn, table="red", thresholds=SMALL)
    assert {(f.check, f.objects[0]) for f in narrowed.findings} == {("redundant_index", "public.red_a_idx")}
    assert check(planted_dsn, schema="public", table="public.red", thresholds=SMALL).findings == narrowed.findings
    with psycopg.connect(planted_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA other")
    try:
        assert check(planted_dsn, schema="other", thresholds=SMALL).findings == []
    finally:
        with psycopg.connect(planted_dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA other")


def test_unknown_table_schema_or_threshold_is_a_one_line_error(planted_dsn):
    with pytest.raises(ConfigError, match="no table 'nope'"):
        check(planted_dsn, table="nope")
    with pytest.raises(ConfigError, match="schema 'nope' does not exist"):
        check(planted_dsn, schema="nope")
    with pytest.raises(ConfigError, match="unknown threshold 'bloat'"):
        check(planted_dsn, bloat=0.1)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        Thresholds(bloat_ratio=2)


def test_clean_database_reports_nothing(server_dsn):
    name, dsn = create_db(server_dsn)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("""
                CREATE TABLE author (id int PRIMARY KEY, email text UNIQUE);
                CREATE TABLE post (id int PRIMARY KEY, author_id int REFERENCES author (id),
                                   published boolean, slug text, tags text[]);
                CREATE INDEX post_author_idx ON post (author_id, id);
                CREATE INDEX post_tags_idx ON post USING gin (tags);
                CREATE INDEX post_slug_idx ON post (slug) WHERE published;
                INSERT INTO author SELECT g, 'a' || g FROM generate_series(1, 100) g;
                INSERT INTO post SELECT g, g % 100 + 1, g % 2 = 0, 's' || g, ARRAY['x']
                  FROM generate_series(1, 20000) g;
                ANALYZE;
            """)
            conn.execute("SET enable_seqscan = off")
            for _ in range(10):
                conn.execute("SELECT * FROM post WHERE slug = 's2' AND published")
                conn.execute("SELECT * FROM post WHERE tags @> ARRAY['y']")
            flush_stats(conn)
        report = check(dsn, thresholds=SMALL)
        assert report.findings == []
        assert report.indexes_checked == 6
    finally:
        drop_db(server_dsn, name)


def test_partitioned_tables_are_judged_at_the_parent_without_unsafe_fixes(server_dsn):
    name, dsn = create_db(server_dsn)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("""
                CREATE TABLE parent (id int PRIMARY KEY);
                CREATE TABLE ev (at date, parent_id int REFERENCES parent (id), flag boolean)
                  PARTITION BY RANGE (at);
                CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
                CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
                CREATE INDEX ev_at_idx ON ev (at);
                CREATE INDEX ev_at_copy ON ev (at);
                CREATE INDEX ev_flag ON ev (flag);
            """)
        report = check(dsn, unused_min_bytes=0)
        found = {(f.check, f.objects[0]): f for f in report.findings}
        # ev_flag is a boolean index on an empty table: no shape advice for tiny tables.
        assert set(found) == {("duplicate_index", "public.ev_at_copy"), ("fk_without_index", "public.ev")}
        # Nothing on a partitioned table can be built or dropped CONCURRENTLY.
        assert all(f.fix_statements == [] for f in found.values())
        assert "cannot be dropped concurrently" in found[("duplicate_index", "public.ev_at_copy")].message
        assert "index each partition" in found[("fk_without_index", "public.ev")].message
    finally:
        drop_db(server_dsn, name)
