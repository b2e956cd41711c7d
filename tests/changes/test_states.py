"""The change's state model: one module moves it, the database refuses what it does not know."""

from __future__ import annotations

import re

import psycopg
import pytest

from pgsteady.changes import states
from pgsteady.changes.states import IN_FLIGHT, InvalidTransition, Status
from pgsteady.queries import for_schema

from ..helpers import ROOT

Q = for_schema("pgsteady")


class _Change:
    def __init__(self, change_id: str) -> None:
        self.id, self.sha = change_id, "abc"


def _record(conn, change_id: str = "c1") -> _Change:
    conn.execute(Q.upsert_change, dict(id=change_id, title="t", owner="o", reason="r", file_path="c.toml",
                                       statement="CREATE INDEX CONCURRENTLY i ON t (a)", rollback=None,
                                       file_sha="abc"))
    return _Change(change_id)


def _status(conn, change_id: str = "c1") -> str:
    return conn.execute("SELECT status FROM pgsteady.changes WHERE id = %s", [change_id]).fetchone()[0]


def test_the_check_constraint_lists_exactly_the_states_of_the_model():
    text = (ROOT / "pgsteady/sql/migrations/008_change_states.sql").read_text()
    assert set(re.findall(r"'([a-z ]+)'", text)) == {str(s) for s in Status}


def test_the_database_refuses_a_status_outside_the_model(conn):
    _record(conn)
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE pgsteady.changes SET status = 'apply maybe failed' WHERE id = 'c1'")


def test_a_full_run_moves_through_every_step_and_a_failed_build_is_recorded_by_the_job_itself(conn):
    change = _record(conn)
    for step, to in (("lint", Status.LINTED), ("plan", Status.PLANNED), ("rehearse", Status.REHEARSED)):
        step_id = states.start_step(conn, Q, change, step, "cmd")
        assert states.end_step(conn, Q, step_id, "done", "ok")
        assert _status(conn) == to
    apply_id = states.start_step(conn, Q, change, "apply", "cmd", queued=True, job_id=1)
    assert _status(conn) == Status.APPLYING
    assert states.end_step(conn, Q, apply_id, "failed", "duplicate key")
    assert _status(conn) == Status.APPLY_FAILED
    # The first writer wins: a second process closing the same step changes nothing.
    assert not states.end_step(conn, Q, apply_id, "done", "late")
    assert _status(conn) == Status.APPLY_FAILED
    again = states.start_step(conn, Q, change, "apply", "cmd", queued=True, job_id=2)
    states.end_step(conn, Q, again, "done", "built")
    verify = states.start_step(conn, Q, change, "verify", "cmd")
    states.end_step(conn, Q, verify, "done", "improved", verdict="improved")
    assert _status(conn) == Status.VERIFIED
    assert conn.execute("SELECT verdict FROM pgsteady.changes WHERE id = 'c1'").fetchone()[0] == "improved"
    back = states.start_step(conn, Q, change, "rollback", "cmd", queued=True, job_id=3)
    # Going in flight again makes the old verdict stale.
    assert conn.execute("SELECT verdict FROM pgsteady.changes WHERE id = 'c1'").fetchone()[0] is None
    states.end_step(conn, Q, back, "done", "dropped")
    assert _status(conn) == Status.ROLLED_BACK


def test_nothing_but_the_end_of_its_job_moves_a_change_in_flight(conn):
    change = _record(conn)
    states.start_step(conn, Q, change, "apply", "cmd", queued=True, job_id=1)
    for step in ("lint", "plan", "rehearse", "verify", "rollback"):
        with pytest.raises(InvalidTransition, match="being applied"):
            states.check(conn, Q, "c1", step)
    with pytest.raises(InvalidTransition):
        states.start_step(conn, Q, change, "rollback", "cmd", queued=True, job_id=2)
    assert not states.move(conn, Q, "c1", Status.LINTED)
    assert not states.move(conn, Q, "c1", Status.ROLLED_BACK)
    assert _status(conn) == Status.APPLYING


def test_verify_before_any_apply_is_refused(conn):
    _record(conn)
    with pytest.raises(InvalidTransition, match="not applied"):
        states.check(conn, Q, "c1", "verify")
    assert not states.move(conn, Q, "c1", Status.VERIFIED)


def test_every_status_is_reachable_and_every_failure_has_a_state():
    reachable = {Status.NEW} | set(states.AFTER.values())
    assert reachable == set(Status)
    for step in states.STEPS:
        assert states.target(step, "failed") == Status(f"{step} failed")
    assert IN_FLIGHT == {Status.APPLYING, Status.ROLLING_BACK}
