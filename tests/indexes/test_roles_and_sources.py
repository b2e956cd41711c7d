"""Ordinary roles, pg_stat_statements, and replicas: what runs, what is skipped and why."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from pgsteady.indexes import check

from .conftest import EXPECTED, SMALL, create_db, drop_db, flush_stats


def test_ordinary_role_without_select_runs_catalog_checks_and_names_what_it_skipped(planted_dsn, role_dsn):
    report = check(role_dsn(planted_dsn), thresholds=SMALL)
    found = {(f.check, f.objects[0]) for f in report.findings}
    # Statistics in pg_stats are hidden without SELECT on the table: those two checks say so.
    stats_checks = {"bloated_index", "mostly_null_index"}
    assert found == {k for k in EXPECTED if k[0] not in stats_checks}
    reasons = dict(report.skipped)
    for name in stats_checks:
        assert "cannot see their column statistics" in reasons[name]
    # The boolean index is still reported, but no partial index is proposed without frequencies.
    [flag] = report.by_check("boolean_index")
    assert flag.evidence["frequencies"] is None and flag.fix_statements == []


def test_ordinary_role_with_select_sees_everything(planted_dsn, role_dsn):
    dsn = role_dsn(planted_dsn)
    role = psycopg.conninfo.conninfo_to_dict(dsn)["user"]
    with psycopg.connect(planted_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA public TO {}").format(sql.Identifier(role)))
    report = check(dsn, thresholds=SMALL)
    assert report.role == role
    assert {(f.check, f.objects[0]) for f in report.findings} == EXPECTED
    assert [name for name, _ in report.skipped] == ["heavy_statements"]


def _available(dsn: str) -> tuple[bool, bool]:
    with psycopg.connect(dsn) as conn:
        available = conn.execute(
            "SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements'").fetchone() is not None
        preloaded = "pg_stat_statements" in conn.execute("SHOW shared_preload_libraries").fetchone()[0]
    return available, preloaded


def _seq_scanned_table(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE feed (id int, body text)")
        conn.execute("INSERT INTO feed SELECT g, repeat('x', 100) FROM generate_series(1, 2000) g")
        for _ in range(10):
            conn.execute("SELECT count(*) FROM feed WHERE body LIKE 'y%'")
        flush_stats(conn)


def test_pg_stat_statements_installed_but_not_preloaded_is_skipped_with_the_reason(empty_dsn):
    available, preloaded = _available(empty_dsn)
    if not available or preloaded:
        pytest.skip("needs pg_stat_statements installed on the server but not in shared_preload_libraries")
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    _seq_scanned_table(empty_dsn)
    report = check(empty_dsn, thresholds=SMALL)
    reason = dict(report.skipped)["heavy_statements"]
    assert "cannot be read" in reason and "shared_preload_libraries" in reason
    # The sequential-scan finding itself still stands.
    [finding] = report.by_check("seq_scan_table")
    assert finding.evidence["statements"] is None


def test_heaviest_statements_are_attached_when_pg_stat_statements_works(empty_dsn):
    available, preloaded = _available(empty_dsn)
    if not (available and preloaded):
        pytest.skip("pg_stat_statements is not in shared_preload_libraries on this server")
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION pg_stat_statements")
    _seq_scanned_table(empty_dsn)
    report = check(empty_dsn, thresholds=SMALL)
    [finding] = report.by_check("seq_scan_table")
    assert any("feed" in s["query"] and s["calls"] >= 10 for s in finding.evidence["statements"])
    assert "heavy_statements" not in dict(report.skipped)


@pytest.fixture
def twin_databases(server_dsn):
    """Two databases with the same unused-looking index; the second stands in for a replica."""
    made = [create_db(server_dsn), create_db(server_dsn)]
    for _, dsn in made:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("CREATE TABLE hit (id int, v int)")
            conn.execute("INSERT INTO hit SELECT g, g FROM generate_series(1, 20000) g")
            conn.execute("CREATE INDEX hit_v_idx ON hit (v)")
    yield [dsn for _, dsn in made]
    for name, _ in made:
        drop_db(server_dsn, name)


def test_scans_on_a_replica_keep_an_index_from_being_called_unused(twin_databases):
    primary, replica = twin_databases
    [alone] = check(primary, thresholds=SMALL).by_check("unused_index")
    assert alone.objects == ["public.hit_v_idx"]
    with psycopg.connect(replica, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SELECT * FROM hit WHERE v = 7")
        flush_stats(conn)
    assert check(primary, also=[replica], thresholds=SMALL).by_check("unused_index") == []


def test_unreachable_replica_skips_the_unused_check_instead_of_guessing(twin_databases):
    primary, _ = twin_databases
    report = check(primary, also=["postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2"],
                   thresholds=SMALL)
    assert report.by_check("unused_index") == []
    reason = dict(report.skipped)["unused_index"]
    assert reason.startswith("could not read index scans from postgres@127.0.0.1:1/postgres")
