"""The database goes away with jobs running, and comes back."""

from __future__ import annotations

import signal
import time

from pgsteady.monitoring.status import Thresholds, check

from ..helpers import stop, wait_until
from . import fleet
from .invariants import Overdue, assert_exactly_once, plant, running, settle

LEASE = 3.0
RESCUE = LEASE / 3


def test_an_outage_longer_than_the_lease_with_jobs_running_leaves_nothing_stuck(fault_server, fault_db):
    # 2.5 leases is enough to show what a 20 s outage showed: every write
    # about the running attempts, their outcome included, fails for longer
    # than a lease, and the attempts must still end (not stay heartbeated).
    dsn = fault_server.dsn(fault_db)
    effects, naps, failing = 30, 30, 12
    plant(dsn, effects, naps, hold=0.3, nap=1.0, failing=failing)
    workers = [fleet.start(dsn, "--concurrency", "6", lease=LEASE) for _ in range(2)]
    try:
        with Overdue(dsn) as overdue:
            wait_until(lambda: running(dsn) >= 6, timeout=60, what="jobs running on both workers")
            fault_server.stop()
            down = check(dsn)
            assert down.health == "down" and down.sections["up"]["database"]["reachable"] is False
            wait_until(lambda: any("failed" in line or "lost" in line for w in workers for line in list(w.lines)),
                       timeout=30, what="the workers to notice")
            time.sleep(LEASE * 2.5)  # the outage itself: its length is the point
            fault_server.start()
            settle(dsn, effects + naps + failing)
        assert_exactly_once(dsn, effects, effects + naps + failing)
        print(f"\n{__name__}: longest running past its lease: {overdue.worst:.2f}s")  # a figure for the record
        overdue.assert_within(LEASE, RESCUE)
    finally:
        logs = [stop(w, signal.SIGTERM) for w in workers]
    assert all(fault_server.password not in log for log in logs)
    # The failures that could not be written were handed to rescue, and said so.
    assert any("its outcome could not be written" in log for log in logs), logs


def test_a_pgbouncer_pause_longer_than_the_lease_leaves_nothing_stuck(fault_server, fault_db, tx_bouncer):
    """PAUSE: every statement through the pooler hangs (nothing is refused)
    until RESUME, longer than a lease; the server itself stays up."""
    dsn = fault_server.dsn(fault_db)
    effects, naps, failing = 20, 20, 8
    plant(dsn, effects, naps, hold=0.3, nap=1.0, failing=failing)
    workers = [fleet.start(tx_bouncer.dsn(fault_db), "--concurrency", "6", lease=LEASE) for _ in range(2)]
    try:
        with Overdue(dsn) as overdue:
            wait_until(lambda: running(dsn) >= 6, timeout=60, what="jobs running on both workers")
            overdue.blind()
            tx_bouncer.admin("PAUSE")
            th = Thresholds(worker_timeout=LEASE, min_workers=0)
            seen = wait_until(lambda: (s := check(dsn, thresholds=th)) and s.sections["up"]["workers"] and not any(
                w["alive"] for w in s.sections["up"]["workers"]) and s, timeout=30,
                what="status (read directly) to show the paused workers down")
            assert seen.health in ("degraded", "down")
            time.sleep(LEASE * 1.5)  # the pause itself: its length is the point
            tx_bouncer.admin("RESUME")
            overdue.sighted()
            settle(dsn, effects + naps + failing)
        assert_exactly_once(dsn, effects, effects + naps + failing)
        print(f"\n{__name__} (pause): longest running past its lease: {overdue.worst:.2f}s")
        overdue.assert_within(LEASE, RESCUE)
    finally:
        logs = [stop(w, signal.SIGTERM) for w in workers]
    assert all(w.returncode == 0 for w in workers), logs
