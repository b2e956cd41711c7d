"""How sessions are set up (pgsteady/topology.py), directly against the test
server; the same through PgBouncer is in tests/faults/test_pooler.py."""

from __future__ import annotations

import pytest

from pgsteady import run_worker
from pgsteady.database import connect
from pgsteady.errors import ConfigError
from pgsteady.topology import Link, application_name, client_params, leash_settings, pooler_setting

from .helpers import scalar


def test_the_dsns_own_keepalive_settings_win_over_the_defaults():
    params = client_params("postgresql://u@h/db?keepalives_idle=99", leash=30)
    assert "keepalives_idle" not in params
    assert params["tcp_user_timeout"] == 30_000 and params["keepalives"] == 1


def test_a_direct_connection_is_detected_as_direct_and_prepares_statements(dsn):
    link = Link(dsn)
    with link.connect(autocommit=True) as conn:
        assert link.mode == "none" and not link.per_transaction
        assert conn.prepare_threshold is not None
    with connect(dsn, autocommit=True) as conn:
        assert conn.info.get_parameters().get("keepalives") == "1"


def test_direct_sessions_get_their_settings_once_and_keep_them(dsn):
    link = Link(dsn, settings=leash_settings(7))
    with link.connect(autocommit=True) as conn:
        assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "7s"
        with link.transaction(conn):
            assert conn.execute("SHOW idle_in_transaction_session_timeout").fetchone()[0] == "7s"


def test_a_read_only_session_refuses_writes(dsn):
    import psycopg

    with connect(dsn, autocommit=True, read_only=True) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("CREATE TABLE nope (id int)")


def test_a_read_dsn_commands_connection_refuses_writes_in_and_out_of_transactions(dsn):
    import psycopg

    from pgsteady.cli.base import State, connect as command_connect

    state = State(dsn="postgresql://nobody@127.0.0.1:1/unreachable", app_path=None, schema_option=None, read_dsn=dsn)
    with command_connect(state, reading=True) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("INSERT INTO pgsteady.deploys (version, marked_by) VALUES ('v', 'x')")
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
            conn.execute("SET LOCAL default_transaction_read_only = off")  # too late: this one began READ ONLY
            conn.execute("INSERT INTO pgsteady.deploys (version, marked_by) VALUES ('v', 'x')")
        assert conn.execute("SHOW statement_timeout").fetchone()[0] == "1min"
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.deploys") == 0


def test_a_read_dsn_command_times_out_as_configured(dsn):
    import psycopg

    from .test_cli import one_line_error, pgsteady

    # A read that would wait forever (behind a lock here; a replica conflict or a huge scan elsewhere).
    with psycopg.connect(dsn) as blocker:
        blocker.execute("LOCK TABLE pgsteady.workers IN ACCESS EXCLUSIVE MODE")
        r = pgsteady("--dsn", "postgresql://nobody@127.0.0.1:1/x", "--read-dsn", dsn, "status", "--json",
                     env={"PGSTEADY_READ_STATEMENT_TIMEOUT": "0.2"})
        blocker.rollback()
    one_line_error(r, "statement timeout")


def test_a_bad_read_statement_timeout_is_one_line(dsn):
    from .test_cli import one_line_error, pgsteady

    r = pgsteady("--read-dsn", dsn, "jobs", "list", env={"PGSTEADY_READ_STATEMENT_TIMEOUT": "soon"})
    one_line_error(r, "PGSTEADY_READ_STATEMENT_TIMEOUT='soon' is not a number of seconds")


def test_pooler_settings_are_checked_with_a_suggestion():
    assert pooler_setting("Transaction") == "transaction"
    with pytest.raises(ConfigError, match="did you mean 'session'"):
        pooler_setting("sesion")


def test_application_names_fit_postgresqls_limit_and_name_the_role():
    name = application_name("claim", "a-very-long-host-name.example.org:123456:deadbeef" * 2)
    assert name.startswith("pgsteady claim ") and len(name.encode()) <= 63


def test_a_workers_task_transactions_run_on_a_leash_of_one_lease(app, dsn):
    with connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE seen (timeout text)")

    @app.task(name="look", transactional=True)
    def look(ctx) -> None:
        ctx.conn.execute("INSERT INTO seen SELECT current_setting('idle_in_transaction_session_timeout')")

    look.enqueue()
    run_worker(app, until_idle=True, handle_signals=False, lease=4)
    assert scalar(dsn, "SELECT timeout FROM seen") == "4s"
