"""Every kind of backend a worker holds is killed under it, again and again."""

from __future__ import annotations

import signal

import psycopg

from ..helpers import stop, wait_until
from . import fleet
from .invariants import Overdue, assert_exactly_once, plant, running, settle

LEASE = 3.0
RESCUE = LEASE / 3
KINDS = ("listen", "claim", "pool", "tasks")  # the leader has no connection of its own: it uses the pool


def _kill(dsn: str, like: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid() AND application_name LIKE %s",
            [like]).fetchone()[0]


def test_killing_listen_claim_pool_and_task_backends_loses_and_repeats_nothing(fault_server, fault_db):
    dsn = fault_server.dsn(fault_db)
    effects, naps = 40, 40
    plant(dsn, effects, naps, hold=0.2, nap=0.2)
    workers = [fleet.start(dsn, "--concurrency", "4", lease=LEASE) for _ in range(2)]
    killed = {}
    try:
        with Overdue(dsn) as overdue:
            wait_until(lambda: running(dsn) >= 4, timeout=60, what="jobs running")
            for kind in KINDS:  # one kind at a time, then all at once
                killed[kind] = wait_until(lambda: _kill(dsn, f"pgsteady {kind}%"), timeout=30,
                                          what=f"a {kind} backend to kill")
                wait_until(lambda: running(dsn) > 0 or _left(dsn) == 0, what="work going on")
            killed["all"] = _kill(dsn, "pgsteady %")
            settle(dsn, effects + naps)
        assert_exactly_once(dsn, effects, effects + naps)
        print(f"\n{__name__}: longest running past its lease: {overdue.worst:.2f}s")  # a figure for the record
        overdue.assert_within(LEASE, RESCUE)
    finally:
        logs = [stop(w, signal.SIGTERM) for w in workers]
    assert all(killed[k] >= 1 for k in KINDS), killed
    assert all("Traceback" not in log for log in logs), logs


def _left(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pgsteady.jobs WHERE state <> 'succeeded'").fetchone()[0]
