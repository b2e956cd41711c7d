"""`pgsteady indexes check`: exit codes a CI job can gate on, JSON for scripts, tables for people."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgsteady.cli import main

SMALL_FLAGS = ["--unused-min-size", "200kB", "--bloat-min-size", "200kB", "--seq-scan-min-size", "64kB",
               "--min-seq-scans", "8", "--shape-min-rows", "50"]


def run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
        raise SystemExit(0)  # main() returns normally on success
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_clean_database_exits_zero_with_an_empty_json_report(capsys, empty_dsn):
    code, out, _ = run(capsys, "--dsn", empty_dsn, "indexes", "check", "--json")
    assert code == 0
    data = json.loads(out)
    assert data["summary"]["total"] == 0 and data["findings"] == []
    assert {"check": "heavy_statements", "reason": data["skipped"][0]["reason"]} == data["skipped"][0]


def test_planted_database_fails_and_prints_every_finding(capsys, planted_dsn):
    code, out, _ = run(capsys, "--dsn", planted_dsn, "indexes", "check", "--json", "--fail-on", "error",
                       *SMALL_FLAGS)
    assert code == 1
    data = json.loads(out)
    assert data["summary"]["error"] == 3
    assert data["thresholds"]["unused_min_bytes"] == 200 * 1024


def test_human_output_groups_by_severity_with_a_summary_line(capsys, planted_dsn):
    code, out, _ = run(capsys, "--dsn", planted_dsn, "indexes", "check", *SMALL_FLAGS)
    assert code == 1
    assert out.index("Errors (3)") < out.index("Warnings (") < out.index("Notes (3)")
    assert "inv_dead_idx" in out
    assert "skipped heavy_statements" in out
    assert out.splitlines()[-1].startswith("3 errors, 7 warnings, 3 notes · 23 indexes, 8 checks run, 1 skipped · ")


@pytest.mark.parametrize(("statement", "fail_on", "expected"), [
    ("CREATE INDEX t_flag_idx ON t (flag)", "warn", 0),  # info only
    ("CREATE INDEX t_a1 ON t (a); CREATE INDEX t_a2 ON t (a)", "error", 0),  # warn only
    ("CREATE INDEX t_a1 ON t (a); CREATE INDEX t_a2 ON t (a)", "warn", 1),
])
def test_fail_on_sets_the_gate(capsys, empty_dsn, statement, fail_on, expected):
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (a int, flag boolean)")
        conn.execute(statement)
    code, _, _ = run(capsys, "--dsn", empty_dsn, "indexes", "check", "--fail-on", fail_on)
    assert code == expected


def test_errors_exit_two_with_one_line(capsys, empty_dsn):
    code, _, err = run(capsys, "--dsn", "postgresql://postgres@127.0.0.1:1/x?connect_timeout=2",
                       "indexes", "check")
    assert code == 2
    assert err.startswith("pgsteady: error: cannot connect to PostgreSQL at postgres@127.0.0.1:1/x")
    assert err.count("\n") == 1
    code, _, err = run(capsys, "--dsn", empty_dsn, "indexes", "check", "--table", "nope")
    assert (code, err) == (2, "pgsteady: error: no table 'nope' on the search_path; "
                              "check --table (use schema.table to be explicit)\n")
    code, _, err = run(capsys, "--dsn", empty_dsn, "indexes", "check", "--unused-min-size", "lots")
    assert code == 2 and "is not a size" in err
