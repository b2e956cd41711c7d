"""Lint refuses each unsafe form with its rule name, and says why in one line."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgsteady.changes import files, lint
from pgsteady.changes.lint import RULES, concurrent_build_bug
from pgsteady.queries import for_schema

from .conftest import make_events, pgsteady, write_change

UNSAFE = [
    ("CREATE INDEX events_kind_idx ON events (kind)", "non-concurrent-create"),
    ("DROP INDEX events_pkey_copy", "non-concurrent-drop"),
    ("REINDEX INDEX events_pkey_copy", "non-concurrent-reindex"),
    ("REINDEX (CONCURRENTLY false) INDEX events_pkey_copy", "non-concurrent-reindex"),
    ("BEGIN; CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind); COMMIT", "transaction-block"),
    ("CREATE INDEX CONCURRENTLY a_idx ON events (kind); CREATE INDEX b_idx ON events (account)",
     "non-concurrent-create"),  # a migration of two steps: each index statement keeps the index rules
    ("DROP INDEX CONCURRENTLY events_pkey_copy, events_by_account", "multiple-statements"),
    ("ALTER TABLE events ADD COLUMN x bigint NOT NULL", "add-required-column"),  # the migration rules
    ("CREATE INDEX CONCURRENTLY ON events (kind)", "unnamed-index"),
    ("CREATE INDEX CONCURRENTLY events_created_copy ON events (created_at)", "duplicate-index"),
    ("CREATE INDEX CONCURRENTLY events_account_only ON events (account)", "redundant-index"),
    ("CREATE INDEX CONCURRENTLY nothing_idx ON no_such_table (a)", "unknown-table"),
    ("DROP INDEX CONCURRENTLY no_such_index", "unknown-index"),
    ("CREATE INDEX CONCURRENTLY events_pkey_copy ON events (kind)", "name-taken"),
    ("CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind) WHERE", "parse-error"),
    # PostgreSQL refuses both (issue 15): a partitioned index, and an index attached to one.
    ("DROP INDEX CONCURRENTLY measurements_v_idx", "partitioned-drop"),
    ("DROP INDEX CONCURRENTLY measurements_2026_v_idx", "partitioned-drop"),
]


@pytest.fixture
def planted(dsn):
    make_events(dsn, 1_000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE INDEX events_created_idx ON events (created_at)")
        conn.execute("CREATE INDEX events_by_account ON events (account, created_at)")
        conn.execute("CREATE UNIQUE INDEX events_pkey_copy ON events (id)")
        conn.execute("CREATE TABLE measurements (at timestamptz, v int) PARTITION BY RANGE (at)")
        conn.execute("CREATE TABLE measurements_2026 PARTITION OF measurements "
                     "FOR VALUES FROM ('2026-01-01') TO ('2027-01-01')")
        conn.execute("CREATE INDEX measurements_v_idx ON measurements (v)")  # measurements_2026_v_idx attached
    return dsn


@pytest.mark.parametrize("ddl", ["DROP INDEX CONCURRENTLY measurements_v_idx",
                                 "DROP INDEX CONCURRENTLY measurements_2026_v_idx"])
def test_the_drops_lint_refuses_as_partitioned_are_the_ones_postgresql_refuses(planted, ddl):
    with psycopg.connect(planted, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.Error):
            conn.execute(ddl)


@pytest.mark.parametrize("ddl, rule", UNSAFE, ids=[rule for _, rule in UNSAFE])
def test_lint_refuses_each_unsafe_form_by_name(planted, tmp_path, ddl, rule):
    change = files.load(write_change(tmp_path, "c", ddl))
    with psycopg.connect(planted, autocommit=True) as conn:
        result = lint(change, conn, for_schema("pgsteady"))
    refused = {f.rule for f in result.findings if f.severity == "refuse"}
    assert rule in refused, result.findings
    assert result.refused


def test_safe_change_passes_with_a_derived_rollback_and_notes(planted, tmp_path):
    with psycopg.connect(planted, autocommit=True) as conn:
        q = for_schema("pgsteady")
        ok = lint(files.load(write_change(tmp_path, "ok", "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)")), conn, q)
        assert not ok.findings and ok.rollback == "DROP INDEX CONCURRENTLY IF EXISTS public.events_kind_idx"
        # A wider index would make events_created_idx redundant: a note, not a refusal.
        wider = lint(files.load(write_change(tmp_path, "wide", "CREATE INDEX CONCURRENTLY events_ck ON events (created_at, kind)")), conn, q)
        assert not wider.refused and [f.rule for f in wider.findings] == ["makes-redundant"]
        # Dropping an index: the rollback is its current definition, built concurrently.
        drop = lint(files.load(write_change(tmp_path, "drop", "DROP INDEX CONCURRENTLY events_by_account")), conn, q)
        assert drop.rollback == ("CREATE INDEX CONCURRENTLY events_by_account ON public.events "
                                 "(account, created_at)")
        # Already there: apply will have nothing to do.
        same = lint(files.load(write_change(tmp_path, "same", "CREATE INDEX CONCURRENTLY events_created_idx ON events (created_at)")), conn, q)
        assert not same.refused and [f.rule for f in same.findings] == ["already-applied"]


def test_postgresql_14_0_to_14_3_are_refused_for_concurrent_builds():
    assert [v for v in (130012, 140000, 140003, 140004, 150020) if concurrent_build_bug(v)] == [140000, 140003]
    assert "14.4" in RULES["concurrent-build-bug"]


def test_lint_command_names_the_rule_and_exits_1(planted, tmp_path):
    path = write_change(tmp_path, "plain", "CREATE INDEX events_kind_idx ON events (kind)")
    r = pgsteady("change", "lint", str(path), dsn=planted)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refuse  non-concurrent-create: CREATE INDEX without CONCURRENTLY blocks every write" in r.stdout
    data = json.loads(pgsteady("change", "lint", str(path), "--json", dsn=planted).stdout)
    assert data["ok"] is False and data["findings"][0]["rule"] == "non-concurrent-create"
    shown = json.loads(pgsteady("change", "show", "plain", "--json", dsn=planted).stdout)
    assert shown["status"] == "refused" and shown["steps"][0]["status"] == "failed"
    # apply runs lint first and refuses too: nothing is enqueued.
    r = pgsteady("change", "apply", str(path), dsn=planted)
    assert r.returncode == 1 and "non-concurrent-create" in r.stderr, r.stderr


def test_bad_change_files_get_one_line_errors(tmp_path, dsn):
    path = write_change(tmp_path, "typo", "CREATE INDEX CONCURRENTLY a ON events (kind)", extra='wach = "10m"\n')
    r = pgsteady("change", "lint", "--offline", str(path), dsn=dsn)
    assert r.returncode == 2 and "unknown field 'wach'; did you mean 'watch'?" in r.stderr, r.stderr
    path = write_change(tmp_path, "write", "CREATE INDEX CONCURRENTLY a ON events (kind)",
                        queries='[[queries]]\nname = "w"\nsql = "DELETE FROM events"\n')
    r = pgsteady("change", "lint", "--offline", str(path), dsn=dsn)
    assert r.returncode == 2 and "must be a SELECT" in r.stderr, r.stderr
    new = tmp_path / "changes" / "2026-11-28-x.toml"
    assert pgsteady("change", "new", str(new), dsn=dsn).returncode == 0
    assert files.load(new).id == "2026-11-28-x"
    assert pgsteady("change", "new", str(new), dsn=dsn).returncode == 2


def test_an_index_on_a_partitioned_table_passes_lint_as_the_partitioned_route(planted, tmp_path):
    change = files.load(write_change(tmp_path, "route", "CREATE INDEX CONCURRENTLY measurements_at_idx ON measurements (at)"))
    with psycopg.connect(planted, autocommit=True) as conn:
        result = lint(change, conn, for_schema("pgsteady"))
        assert not result.refused, result.findings
        assert "partitioned-route" in {f.rule for f in result.findings}
        # Its rollback is the plain DROP PostgreSQL needs, and lint lets that one through.
        assert result.rollback == "DROP INDEX IF EXISTS public.measurements_at_idx"
        from pgsteady.changes.lint import recheck

        conn.execute("CREATE INDEX measurements_at_idx ON measurements (at)")
        back = recheck(result.rollback, conn, for_schema("pgsteady"))
        assert not back.refused and "partitioned-drop" in {f.rule for f in back.findings}, back.findings
