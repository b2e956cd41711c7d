"""A worker's network link is cut silently (it runs in a network namespace
made by the test), with row locks held by its transactions."""

from __future__ import annotations

import signal
import time

import psycopg
import pytest

from pgsteady.monitoring.status import Thresholds, check

from ..helpers import stop, wait_until
from . import fleet
from .cluster import Netns
from .invariants import Overdue, assert_exactly_once, plant, settle

LEASE = 3.0
RESCUE = LEASE / 3


@pytest.fixture
def ns(netns):
    if netns is None:
        pytest.skip(Netns.available() or "could not make a network namespace here")
    yield netns
    netns.mend()


def _held_by(dsn: str, worker: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pgsteady.jobs WHERE state = 'running' AND worker_id LIKE %s",
                            [worker]).fetchone()[0]


def test_a_cut_workers_locks_are_released_and_its_jobs_rescued_while_the_link_is_still_cut(
        fault_server, fault_db, ns):
    dsn = fault_server.dsn(fault_db)
    effects = 12
    # Each job takes a row lock and holds its transaction open a while: a
    # rescued copy of it has to wait for that lock until the server ends
    # the cut worker's transaction.
    plant(dsn, effects, hold=LEASE / 3)
    cut_worker = fleet.start(fault_server.dsn(fault_db, host=ns.host_ip), "--concurrency", "4", lease=LEASE,
                             netns=ns)
    others = []
    try:
        with Overdue(dsn) as overdue:
            wait_until(lambda: _held_by(dsn, "%") >= 4, timeout=60, what="the namespaced worker running jobs")
            ns.cut()
            cut_at = time.monotonic()
            others.append(fleet.start(dsn, "--concurrency", "4", lease=LEASE))
            th = Thresholds(worker_timeout=LEASE, min_workers=0)
            seen = wait_until(lambda: (s := check(dsn, thresholds=th)) and any(
                not w["alive"] for w in s.sections["up"]["workers"]) and s, timeout=30,
                what="status to show the cut worker down")
            assert seen.health in ("degraded", "down")
            settle(dsn, effects, timeout=60)  # all done while the link is still cut
            print(f"\nall {effects} jobs done {time.monotonic() - cut_at:.1f}s after the cut (lease {LEASE}s)")
            assert ns.cut_now
        assert_exactly_once(dsn, effects, effects)
        print(f"\n{__name__}: longest running past its lease: {overdue.worst:.2f}s")  # a figure for the record
        overdue.assert_within(LEASE, RESCUE)
    finally:
        ns.mend()
        logs = [stop(w, signal.SIGTERM) for w in [cut_worker, *others]]
    assert fault_server.password not in "".join(logs)
