"""What indexes check got wrong or said nothing about (issue 15), each fixed."""

from __future__ import annotations

import os
import subprocess
import sys

import psycopg
import pytest

from pgsteady.indexes import check

from ..helpers import ROOT
from .conftest import SMALL, create_db, drop_db


@pytest.fixture
def db(server_dsn):
    name, dsn = create_db(server_dsn)
    yield dsn
    drop_db(server_dsn, name)


def test_invalid_partitioned_parent_gets_build_and_attach_advice_that_makes_it_valid(db):
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("""
            CREATE TABLE ev (at date, kind text) PARTITION BY RANGE (at);
            CREATE TABLE ev_2024 PARTITION OF ev FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
            CREATE TABLE ev_2025 PARTITION OF ev FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            CREATE INDEX ev_kind_idx ON ONLY ev (kind);
            CREATE INDEX ev_2024_kind ON ev_2024 (kind);
            ALTER INDEX ev_kind_idx ATTACH PARTITION ev_2024_kind;
        """)
    found = check(db, unused_min_bytes=0).by_check("invalid_index")
    assert len(found) == 1
    f = found[0]
    assert f.objects == ["public.ev_kind_idx"] and "Do not drop it" in f.message and "public.ev_2025" in f.message
    assert not any(s.startswith("DROP") for s in f.fix_statements)
    assert f.fix_statements[0].startswith("CREATE INDEX CONCURRENTLY ev_2025_ev_kind_idx ON public.ev_2025")
    assert f.fix_statements[1] == 'ALTER INDEX "public"."ev_kind_idx" ATTACH PARTITION "public"."ev_2025_ev_kind_idx";'
    # The advice works: run it, and the parent is valid with both partition indexes kept.
    with psycopg.connect(db, autocommit=True) as conn:
        for statement in f.fix_statements:
            conn.execute(statement)
        assert conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = 'ev_kind_idx'::regclass").fetchone()[0]
        assert conn.execute("SELECT to_regclass('ev_2024_kind') IS NOT NULL").fetchone()[0]
    assert check(db, unused_min_bytes=0).by_check("invalid_index") == []


def test_bloat_names_never_analysed_tables_as_skipped_instead_of_leaving_them_out(db):
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE raw (v int) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO raw SELECT g FROM generate_series(1, 20000) g")
        conn.execute("CREATE INDEX raw_v_idx ON raw (v)")
        conn.execute("DELETE FROM raw WHERE v % 10 <> 0")
        conn.execute("VACUUM raw")  # frees the dead entries' space, leaves no column statistics
    report = check(db, thresholds=SMALL)
    skipped = [reason for name, reason in report.skipped if name == "bloated_index"]
    assert any("never analysed" in r and "public.raw_v_idx" in r and "pgstattuple" in r for r in skipped), skipped


def test_bloat_of_a_never_analysed_table_is_measured_with_pgstattuple_when_present(db):
    with psycopg.connect(db, autocommit=True) as conn:
        if not conn.execute("SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'pgstattuple')").fetchone()[0]:
            pytest.skip("pgstattuple is not available on this server (postgresql-contrib)")
        conn.execute("CREATE EXTENSION pgstattuple")
        conn.execute("CREATE TABLE raw (v int) WITH (autovacuum_enabled = false)")
        conn.execute("INSERT INTO raw SELECT g FROM generate_series(1, 20000) g")
        conn.execute("CREATE INDEX raw_v_idx ON raw (v)")
        conn.execute("DELETE FROM raw WHERE v % 10 <> 0")
        conn.execute("VACUUM raw")
    found = check(db, thresholds=SMALL).by_check("bloated_index")
    assert [f.objects[0] for f in found] == ["public.raw_v_idx"]
    assert "pgstattuple" in found[0].evidence["method"] and found[0].evidence["bloat_ratio"] > 0.5


def test_unused_says_there_is_not_enough_history_right_after_a_statistics_reset(db):
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (id int, v int)")
        conn.execute("INSERT INTO t SELECT g, g FROM generate_series(1, 20000) g")
        conn.execute("CREATE INDEX t_v_idx ON t (v)")
        conn.execute("SELECT pg_stat_reset()")
    report = check(db, unused_min_bytes=0)
    assert report.by_check("unused_index") == []
    reasons = [r for name, r in report.skipped if name == "unused_index"]
    assert reasons and "not enough history" in reasons[0] and "7 days" in reasons[0], report.skipped
    # With a shorter minimum, the same counters are judged.
    judged = check(db, unused_min_bytes=0, unused_min_history_seconds=0)
    assert [f.objects[0] for f in judged.by_check("unused_index")] == ["public.t_v_idx"]


def test_no_shape_advice_for_pgsteadys_own_tables_or_tiny_ones(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE small_flags (id int, done boolean)")
        conn.execute("INSERT INTO small_flags SELECT g, g % 20 = 0 FROM generate_series(1, 40) g")
        conn.execute("CREATE INDEX small_flags_done ON small_flags (done)")
        conn.execute("ANALYZE")
    report = check(dsn, unused_min_bytes=0)
    shapes = [f for f in report.findings if f.check in ("boolean_index", "mostly_null_index", "array_btree_index")]
    assert shapes == [], [f.to_dict() for f in shapes]
    # The same table, once it is not tiny, is advised on; pgsteady's own boolean key never is.
    everything = check(dsn, unused_min_bytes=0, shape_min_rows=10)
    flagged = {f.objects[0] for f in everything.by_check("boolean_index")}
    assert flagged == {"public.small_flags_done"}, flagged


def test_piped_text_output_wraps_finding_messages_instead_of_cutting_them(db):
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE parent (id int PRIMARY KEY)")
        conn.execute("CREATE TABLE a_rather_long_child_table_name (id int, parent_id int REFERENCES parent (id))")
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")}
    env.update(PYTHONPATH=str(ROOT), PGSTEADY_DSN=db)
    out = subprocess.run([sys.executable, "-m", "pgsteady", "indexes", "check"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60).stdout
    assert "…" not in out, out
    message = check(db).by_check("fk_without_index")[0].message
    assert " ".join(message.split()) in " ".join(out.split()), out  # wrapped, and whole
