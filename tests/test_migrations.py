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


# -- privileges: what a role needs, said in one line ----------------------------------------------


@pytest.fixture
def make_role(server_dsn):
    """A factory of fresh ordinary LOGIN roles (dropped afterwards, with what they own or were granted)."""
    from psycopg import sql
    import uuid

    made: list[tuple[str, str]] = []

    def make(dsn: str) -> tuple[str, str]:
        role = f"mig_role_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB").format(sql.Identifier(role)))
        made.append((role, dsn))
        from psycopg.conninfo import make_conninfo

        return role, make_conninfo(dsn, user=role)

    yield make
    for role, dsn in made:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(sql.Identifier(role)))
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def _admin(dsn: str, statement: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(statement)


def test_migrate_needs_no_create_on_the_database_for_a_schema_the_role_owns(empty_dsn, make_role):
    role, role_dsn = make_role(empty_dsn)
    _admin(empty_dsn, f'REVOKE CREATE ON DATABASE "{psycopg.conninfo.conninfo_to_dict(empty_dsn)["dbname"]}" FROM PUBLIC')
    # Without the schema, the refusal names the grant or the schema to create for it.
    from pgsteady.migrations import MigrationFailed

    with pytest.raises(MigrationFailed, match=rf"as {role} was refused .*Fix: GRANT CREATE ON DATABASE .* "
                                              rf"CREATE SCHEMA \"pgsteady\" AUTHORIZATION \"{role}\""):
        migrate(role_dsn)
    _admin(empty_dsn, f'CREATE SCHEMA pgsteady AUTHORIZATION "{role}"')
    assert migrate(role_dsn) == list(range(1, latest_version() + 1))
    assert migrate(role_dsn) == []


def test_migrate_of_someone_elses_schema_says_whose_it_is(empty_dsn, make_role):
    from pgsteady.migrations import MigrationFailed

    role, role_dsn = make_role(empty_dsn)
    _admin(empty_dsn, "CREATE SCHEMA pgsteady")
    with pytest.raises(MigrationFailed, match=rf"Fix: ALTER SCHEMA \"pgsteady\" OWNER TO \"{role}\""):
        migrate(role_dsn)


def test_dml_only_worker_role_is_told_the_grant_the_partition_duty_needs(dsn, make_role):
    import asyncio

    from pgsteady.maintenance.partitions import PartitionKeeper, PartitionsNeedOwner
    from pgsteady.queries import for_schema

    role, role_dsn = make_role(dsn)
    _admin(dsn, f'GRANT USAGE ON SCHEMA pgsteady TO "{role}"')
    _admin(dsn, f'GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA pgsteady TO "{role}"')
    with psycopg.connect(dsn, autocommit=True) as conn:  # a day ahead is missing, so the duty must create it
        last = conn.execute("SELECT max(c.relname) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                            " WHERE i.inhparent = 'pgsteady.events'::regclass AND c.relname <> 'events_default'"
                            ).fetchone()[0]
        conn.execute(f"DROP TABLE pgsteady.{last}")
        owner = conn.execute("SELECT current_user").fetchone()[0]

    async def once() -> int:
        async with await psycopg.AsyncConnection.connect(role_dsn, autocommit=True) as conn:
            return await PartitionKeeper(for_schema("pgsteady")).run_once(conn)

    with pytest.raises(PartitionsNeedOwner) as exc:
        asyncio.run(once())
    message = str(exc.value)
    assert "\n" not in message and f"as {role}" in message and f'GRANT "{owner}" TO "{role}"' in message
    _admin(dsn, f'GRANT "{owner}" TO "{role}"')
    assert asyncio.run(once()) == 1
