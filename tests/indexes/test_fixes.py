"""The fix and undo SQL of every finding runs on the planted database and does what it says."""

from __future__ import annotations

import psycopg

from pgsteady.indexes import check

from .conftest import EXPECTED, SMALL


def keys(report):
    return {(f.check, f.objects[0]) for f in report.findings}


def run(dsn, statements):
    # One statement per call: CONCURRENTLY refuses to run inside a
    # multi-statement string (an implicit transaction).
    with psycopg.connect(dsn, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def index_is_valid(dsn, qualified):
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)",
                           [qualified]).fetchone()
    return row is not None and row[0]


def test_every_fix_removes_its_finding_and_every_undo_brings_it_back(planted_dsn_fresh):
    dsn = planted_dsn_fresh
    findings = check(dsn, thresholds=SMALL).findings
    assert keys_of(findings) == EXPECTED
    with_fix = [f for f in findings if f.fix_statements]
    # Only the sequential-scan finding has no automatic fix.
    assert {f.check for f in findings if not f.fix_statements} == {"seq_scan_table"}
    for finding in with_fix:
        key = (finding.check, finding.objects[0])
        run(dsn, finding.fix_statements)
        assert key not in keys(check(dsn, thresholds=SMALL)), f"fix did not remove {key}"
        if not finding.undo_statements:
            assert finding.check == "bloated_index"  # REINDEX keeps the definition: nothing to undo
            continue
        run(dsn, finding.undo_statements)
        if finding.check == "invalid_index":
            # Undoing a drop of a dead index rebuilds it, this time VALID.
            assert index_is_valid(dsn, finding.objects[0])
        else:
            assert key in keys(check(dsn, thresholds=SMALL)), f"undo did not restore {key}"


def keys_of(findings):
    return {(f.check, f.objects[0]) for f in findings}


def test_fix_for_a_foreign_key_builds_a_usable_index(planted_dsn_fresh):
    finding = next(f for f in check(planted_dsn_fresh, thresholds=SMALL).findings if f.check == "fk_without_index")
    run(planted_dsn_fresh, finding.fix_statements)
    with psycopg.connect(planted_dsn_fresh) as conn:
        conn.execute("SET enable_seqscan = off")
        plan = conn.execute("EXPLAIN (FORMAT JSON) SELECT 1 FROM child WHERE parent_id = 3").fetchone()[0]
    assert "child_parent_id_idx" in str(plan)
