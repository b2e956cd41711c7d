"""Reading from a streaming replica made by pg_basebackup: --read-dsn, and
index scans that only the replica sees."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgsteady import App
from pgsteady.database import connect
from pgsteady.indexes import Thresholds, check

from ..test_cli import pgsteady

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2"
ANY_SIZE = Thresholds(unused_min_bytes=0)


def _plant_index(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE hit (id int, v int)")
        conn.execute("INSERT INTO hit SELECT g, g FROM generate_series(1, 5000) g")
        conn.execute("CREATE INDEX hit_v_idx ON hit (v)")
        conn.execute("ANALYZE hit")


def _scan_on(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET enable_seqscan = off")
        conn.execute("SELECT * FROM hit WHERE v = 7").fetchall()
        conn.execute("SELECT pg_stat_force_next_flush()")


def test_an_index_only_the_replica_uses_is_not_called_unused(fault_server, fault_db, replica):
    primary = fault_server.dsn(fault_db)
    _plant_index(primary)
    replica.wait_caught_up()
    _scan_on(replica.dsn(fault_db))
    alone = check(primary, schema="public", thresholds=ANY_SIZE).by_check("unused_index")
    assert [f.objects for f in alone] == [["public.hit_v_idx"]]  # the primary alone would drop it
    assert check(primary, schema="public", also=[replica.dsn(fault_db)], thresholds=ANY_SIZE).by_check("unused_index") == []


def test_index_check_read_from_the_replica_still_counts_the_primarys_scans(fault_server, fault_db, replica):
    primary = fault_server.dsn(fault_db)
    _plant_index(primary)
    replica.wait_caught_up()
    r = pgsteady("--dsn", primary, "--read-dsn", replica.dsn(fault_db), "indexes", "check", "--json",
                 "--schema", "public", "--unused-min-size", "0")
    [unused] = [f for f in json.loads(r.stdout)["findings"] if f["check"] == "unused_index"]
    assert set(unused["evidence"]["scans_by_server"].values()) == {0}
    assert len(unused["evidence"]["scans_by_server"]) == 2  # the replica read, the primary asked
    _scan_on(primary)
    r = pgsteady("--dsn", primary, "--read-dsn", replica.dsn(fault_db), "indexes", "check", "--json",
                 "--schema", "public", "--unused-min-size", "0")
    assert [f for f in json.loads(r.stdout)["findings"] if f["check"] == "unused_index"] == []


def test_status_and_jobs_read_from_the_replica_alone(fault_server, fault_db, replica):
    app = App(dsn=fault_server.dsn(fault_db))
    app.task(lambda: None, name="t")
    ref = app.enqueue("t")
    app.close()
    replica.wait_caught_up()
    read = replica.dsn(fault_db)
    # The primary cannot even be reached: what these print came from the replica.
    listed = pgsteady("--dsn", UNREACHABLE, "--read-dsn", read, "jobs", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert [j["id"] for j in json.loads(listed.stdout)] == [ref.id]
    shown = pgsteady("--dsn", UNREACHABLE, "--read-dsn", read, "jobs", "show", str(ref.id), "--json")
    assert json.loads(shown.stdout)["state"] == "waiting"
    status = pgsteady("--dsn", UNREACHABLE, "--read-dsn", read, "status", "--json")
    assert json.loads(status.stdout)["up"]["database"]["reachable"] is True
    assert fault_server.password not in listed.stdout + listed.stderr + status.stdout + status.stderr


@pytest.mark.parametrize("command", [["status", "--json"], ["jobs", "list", "--json"],
                                     ["indexes", "check", "--json", "--fail-on", "error"]])
def test_reading_commands_write_nothing_even_when_the_read_dsn_is_a_primary(fault_server, fault_db, command):
    primary = fault_server.dsn(fault_db)
    with connect(primary, autocommit=True, read_only=True) as conn, pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        conn.execute("CREATE TABLE written (id int)")  # what any write would meet
    r = pgsteady("--dsn", UNREACHABLE, "--read-dsn", primary, *command)
    assert "read-only" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert r.returncode in (0, 1, 2) and r.stdout.strip().startswith(("{", "[")), r.stderr


def test_a_read_dsn_session_through_pgbouncer_refuses_writes_and_carries_its_timeout(fault_db, bouncer, monkeypatch):
    """Session pooling (named, so settings are per session): every statement is
    read-only and time-limited. Transaction pooling: session settings cannot
    outlive a transaction, but every transaction still begins READ ONLY."""
    monkeypatch.setenv("PGSTEADY_READ_STATEMENT_TIMEOUT", "0.25")
    through = bouncer.dsn(fault_db)
    with connect(through, autocommit=True, read_only=True, pooler=bouncer.mode) as conn:
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), conn.transaction():
            conn.execute("CREATE TABLE written (id int)")
        if bouncer.mode == "session":
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                conn.execute("CREATE TABLE written (id int)")
            with pytest.raises(psycopg.errors.QueryCanceled):
                conn.execute("SELECT pg_sleep(30)")
    with psycopg.connect(through, autocommit=True) as other:  # nothing leaked to the pool's next client
        assert other.execute("SHOW default_transaction_read_only").fetchone()[0] == "off"
        other.execute("CREATE TABLE written (id int)")
