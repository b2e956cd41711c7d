"""One build per table: the lease row of pgsteady/changes/slots.py, on the real server."""

from __future__ import annotations

import threading

from pgsteady.changes.slots import Slot

from ..helpers import scalar, wait_until

TABLE_OID = 424242  # the slot is keyed by oid alone; no table needs to exist for it


def test_a_held_slot_refuses_a_second_build_until_it_is_released(app, dsn, conn):
    first = Slot(app, TABLE_OID, job_id=1, attempt=1, lease=30)
    second = Slot(app, TABLE_OID, job_id=2, attempt=1, lease=30)
    assert first.try_take(conn) and first.holds()
    assert not second.try_take(conn)
    assert second.holder_now(conn)["job_id"] == 1
    won = first.token
    first.release(conn)
    assert second.try_take(conn) and second.token == won + 1


def test_a_dead_builders_slot_is_taken_over_once_its_lease_passed_and_its_renewal_is_then_refused(app, dsn, conn):
    dead = Slot(app, TABLE_OID, job_id=1, attempt=1, lease=30)
    assert dead.try_take(conn)
    waiting = Slot(app, TABLE_OID, job_id=2, attempt=1, lease=30)
    assert not waiting.try_take(conn)
    # Its lease passes without a renewal (the builder died, froze or lost its link).
    conn.execute("UPDATE pgsteady.build_slots SET expires_at = now() - interval '1 second'")
    assert waiting.try_take(conn)
    assert waiting.token == dead.token + 1 and waiting.holder_now(conn)["job_id"] == 2
    # The old holder wakes up: its renewal presents the old token and matches nothing.
    lost = threading.Event()
    dead.lease = 0.2  # renew soon
    dead.keep(on_lost=lambda why: lost.set())
    assert lost.wait(10), "the old holder never learnt it lost the slot"
    assert not dead.holds() and "another build holds it" in dead.lost
    dead.release(conn)  # ends nothing of the new holder's
    assert waiting.holder_now(conn)["job_id"] == 2


def test_a_holder_renews_its_slot_while_it_builds(app, dsn, conn):
    slot = Slot(app, TABLE_OID, job_id=1, attempt=1, lease=1)
    assert slot.try_take(conn)
    first = scalar(dsn, "SELECT renewed_at FROM pgsteady.build_slots")
    slot.keep(on_lost=lambda why: None)
    try:
        wait_until(lambda: scalar(dsn, "SELECT renewed_at > %s FROM pgsteady.build_slots", [first]),
                   what="a renewal of the slot")
        assert slot.holds()
    finally:
        slot.release(conn)
    assert scalar(dsn, "SELECT expires_at <= now() FROM pgsteady.build_slots") is True
