"""The schema: fresh install vs. every migration, idempotence, locking."""

from __future__ import annotations

import subprocess
import threading

import psycopg
import pytest

from pgsteady import migrations
from pgsteady.errors import ConfigError, SchemaNotReady
from pgsteady.migrations import check_current, latest_version, migrate


def _pg_dump(dsn: str, schema: str) -> str:
    from pgsteady import embedded

    out = subprocess.run([str(embedded.bin_path("pg_dump")), "--schema-only", "--no-owner", "--schema", schema, "-d", dsn],
                         check=True, capture_output=True, text=True).stdout
    # Comments, SET lines and per-server column options (some builds stamp a
    # pg_attver option on columns) are noise, not schema.
    return "\n".join(line for line in out.splitlines()
                     if line and not line.startswith("--") and not line.startswith("SET ")
                     and "pg_attver=" not in line
                     and not line.startswith("SELECT pg_catalog.set_config") and not line.startswith("\\"))


def test_fresh_install_equals_all_migrations_applied(empty_dsn, server_dsn):
    migrate(empty_dsn, "via_schema", fresh_from="schema")
    migrate(empty_dsn, "via_migrations", fresh_from="migrations")
    a = _pg_dump(empty_dsn, "via_schema").replace("via_schema", "S")
    b = _pg_dump(empty_dsn, "via_migrations").replace("via_migrations", "S")
    assert a == b
    assert "CREATE TABLE S.jobs" in a  # the dump is not empty by accident


def test_migrate_is_idempotent_and_records_versions(empty_dsn):
    assert migrate(empty_dsn) == list(range(1, latest_version() + 1))
    assert migrate(empty_dsn) == []
    with psycopg.connect(empty_dsn) as conn:
        check_current(conn, "pgsteady")
        assert conn.execute("SELECT count(*) FROM pgsteady.migrations").fetchone()[0] == latest_version()


def test_concurrent_migrate_applies_each_migration_once(empty_dsn):
    results, errors = [], []

    def run():
        try:
            results.append(migrate(empty_dsn))
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(map(len, results)) == [0, 0, 0, latest_version()]


def test_worker_refuses_a_database_that_was_not_migrated(empty_dsn):
    with psycopg.connect(empty_dsn) as conn, pytest.raises(SchemaNotReady, match="run `pgsteady migrate`"):
        check_current(conn, "pgsteady")


def test_upgrade_applies_only_missing_migrations(empty_dsn, monkeypatch):
    first = migrations.available()
    extra = migrations.Migration(len(first) + 1, "test_extra", "CREATE TABLE {schema}.test_extra (id int);")
    migrate(empty_dsn)
    monkeypatch.setattr(migrations, "available", lambda: [*first, extra])
    assert migrate(empty_dsn) == [extra.version]
    with psycopg.connect(empty_dsn) as conn:
        assert conn.execute("SELECT to_regclass('pgsteady.test_extra') IS NOT NULL").fetchone()[0]


@pytest.mark.parametrize("bad", ["Pgsteady", "a-b", "1abc", "x;drop", "", "a" * 64])
def test_schema_names_are_validated(bad, empty_dsn):
    with pytest.raises(ConfigError, match="schema name"):
        migrate(empty_dsn, bad)


def test_event_partitions_exist_ahead_and_late_rows_move_out_of_default(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        parts = conn.execute(
            "SELECT count(*) FROM pg_inherits WHERE inhparent = 'pgsteady.events'::regclass").fetchone()[0]
        assert parts >= migrations.EVENT_DAYS_AHEAD + 2  # yesterday..+7 days and the default
        # A row for a day with no partition lands in the default partition ...
        far = "now() + interval '30 days'"
        conn.execute(f"INSERT INTO pgsteady.events (created_at, kind) VALUES ({far}, 'test')")
        assert conn.execute("SELECT count(*) FROM pgsteady.events_default").fetchone()[0] == 1
        # ... and moves into that day's partition when it is created.
        conn.execute("SELECT pgsteady.ensure_event_partitions(31)")
        assert conn.execute("SELECT count(*) FROM pgsteady.events_default").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM pgsteady.events WHERE kind = 'test'").fetchone()[0] == 1
