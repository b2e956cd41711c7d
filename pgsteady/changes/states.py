"""The state of a change, and the one place that moves it.

A change's status follows from the steps run for it. Every run of a step is
a row in ``change_steps`` (``queued`` -> ``running`` -> ``done`` / ``failed``
/ ``skipped``); when a step is queued or ends, the change moves:

    (step, outcome)          -> status
    lint done / refused      -> linted / refused
    plan, rehearse done      -> planned, rehearsed
    apply queued             -> applying          (in flight)
    apply done               -> applied
    rollback queued          -> rolling back      (in flight)
    rollback done            -> rolled back
    verify done              -> verified (with its verdict)
    any step failed          -> "<step> failed"

A move is validated against ``ALLOWED`` (where the change may be coming
from) inside the UPDATE itself, so two processes (the command and the worker
running the build) cannot interleave into a status that no step explains:

- while a change is in flight (applying, rolling back) only the end of that
  job moves it; lint, plan, rehearse, another apply or a rollback are refused
  with a one-line error until it ends;
- applied / apply failed come only from applying, rolled back / rollback
  failed only from rolling back, verified only after an apply.

A change of several statements (a migration in steps, a partitioned route)
stays ``applying`` while its apply steps run, and becomes ``applied`` when
the last one is done: the outcome of each step is on its own row.

The database holds the same list of statuses in a CHECK constraint
(migration 008); ``test_states`` checks that both lists agree.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import psycopg

from ..errors import PgsteadyError
from ..queries import Queries
from ..indexes import probes
from .targets import jsonb, row


class Status(StrEnum):
    NEW = "new"
    LINTED = "linted"
    REFUSED = "refused"
    PLANNED = "planned"
    REHEARSED = "rehearsed"
    APPLYING = "applying"
    APPLIED = "applied"
    ROLLING_BACK = "rolling back"
    ROLLED_BACK = "rolled back"
    VERIFIED = "verified"
    LINT_FAILED = "lint failed"
    PLAN_FAILED = "plan failed"
    REHEARSE_FAILED = "rehearse failed"
    APPLY_FAILED = "apply failed"
    ROLLBACK_FAILED = "rollback failed"
    VERIFY_FAILED = "verify failed"


STEPS = ("lint", "plan", "rehearse", "apply", "rollback", "verify")
STEP_STATUSES = ("queued", "running", "done", "failed", "skipped")
IN_FLIGHT = frozenset({Status.APPLYING, Status.ROLLING_BACK})
_SETTLED = frozenset(Status) - IN_FLIGHT
_APPLIED_ONCE = frozenset({Status.APPLIED, Status.VERIFIED, Status.VERIFY_FAILED})

# What each (step, outcome) moves the change to.
AFTER: dict[tuple[str, str], Status] = {
    ("lint", "done"): Status.LINTED,
    ("lint", "refused"): Status.REFUSED,
    ("plan", "done"): Status.PLANNED,
    ("rehearse", "done"): Status.REHEARSED,
    ("rehearse", "skipped"): Status.REHEARSED,
    ("apply", "queued"): Status.APPLYING,
    ("apply", "done"): Status.APPLIED,
    ("rollback", "queued"): Status.ROLLING_BACK,
    ("rollback", "done"): Status.ROLLED_BACK,
    ("verify", "done"): Status.VERIFIED,
    **{(step, "failed"): Status(f"{step} failed") for step in STEPS},
}

# Where a change may come from to reach each status.
ALLOWED: dict[Status, frozenset[Status]] = {
    **{s: _SETTLED for s in (Status.LINTED, Status.REFUSED, Status.LINT_FAILED, Status.PLANNED,
                             Status.PLAN_FAILED, Status.REHEARSED, Status.REHEARSE_FAILED,
                             Status.APPLYING, Status.ROLLING_BACK)},
    Status.APPLIED: frozenset({Status.APPLYING}),
    Status.APPLY_FAILED: frozenset({Status.APPLYING}),
    Status.ROLLED_BACK: frozenset({Status.ROLLING_BACK}),
    Status.ROLLBACK_FAILED: frozenset({Status.ROLLING_BACK}),
    Status.VERIFIED: _APPLIED_ONCE,
    Status.VERIFY_FAILED: _APPLIED_ONCE,
    Status.NEW: frozenset(),
}


class InvalidTransition(PgsteadyError):
    """A step that the change's current state does not allow (exit 2, nothing written)."""


def target(step: str, outcome: str) -> Status | None:
    """The status a step's outcome moves the change to; None when it moves nothing (a step starting)."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}")
    return AFTER.get((step, outcome))


def may_start(current: str, step: str) -> str | None:
    """Why ``step`` may not run on a change in ``current`` (None: it may)."""
    status = Status(current)
    if status in IN_FLIGHT:
        doing = "being applied" if status is Status.APPLYING else "being rolled back"
        return (f"the change is {doing} by a job on the maintenance queue; wait for it to end "
                f"(`pgsteady change show` follows it) before running {step}")
    if step == "verify" and status not in _APPLIED_ONCE:
        return f"the change is {status}, not applied; run `pgsteady change apply` first"
    return None


def check(conn: psycopg.Connection, q: Queries, change_id: str, step: str) -> None:
    """Refuse, with one line, a step the change's current state does not allow."""
    found = row(conn, q.get_change, {"id": change_id})
    if found is None:
        return
    why = may_start(found["status"], step)
    if why:
        raise InvalidTransition(f"change {change_id}: {why}")


def move(conn: psycopg.Connection, q: Queries, change_id: str, to: Status, verdict: str | None = None) -> bool:
    """Move the change to ``to`` if its current status allows it; False (nothing written) otherwise."""
    moved = row(conn, q.move_change, {"id": change_id, "to": str(to), "allowed": [str(s) for s in ALLOWED[to]],
                                      "verdict": verdict, "clear_verdict": to in IN_FLIGHT})
    return moved is not None


def start_step(conn: psycopg.Connection, q: Queries, change: Any, step: str, command: str, *,
               queued: bool = False, job_id: int | None = None, details: dict[str, Any] | None = None) -> int:
    """Record a run of ``step`` (running, or queued for a job); a queued apply/rollback moves the change."""
    status = "queued" if queued else "running"
    to = target(step, status)
    if to is not None and not move(conn, q, change.id, to):
        current = row(conn, q.get_change, {"id": change.id})
        raise InvalidTransition(f"change {change.id} is {current['status'] if current else 'unknown'}; "
                                f"it cannot start {step} now")
    # A step the command runs itself names the backend running it, so that a
    # killed command's step can be told from one still running (cleanup.sweep).
    facts = dict(details or {})
    if not queued:
        facts["backend"] = backend(conn, q)
    details = jsonb(facts) if facts else None
    return row(conn, q.start_step, dict(change_id=change.id, step=step, status=status, command=command,
                                        file_sha=change.sha, job_id=job_id, details=details))["id"]


def backend(conn: psycopg.Connection, q: Queries) -> dict[str, Any]:
    pid, started = probes.backend_self(conn)
    return {"pid": pid, "backend_start": started.isoformat()}


def end_step(conn: psycopg.Connection, q: Queries, step_id: int, outcome: str, summary: str,
             details: dict[str, Any] | None = None, verdict: str | None = None) -> bool:
    """Close a step still open (first writer wins) and move its change; False when it was already closed.

    ``outcome`` is done, failed, skipped, or refused (lint; the step row says failed).
    """
    with conn.transaction():
        closed = row(conn, q.finish_step, dict(id=step_id, status="failed" if outcome == "refused" else outcome,
                                               summary=summary,
                                               details=jsonb(details) if details is not None else None))
        if closed is None:
            return False
        to = target(closed["step"], outcome)
        if to is not None:
            move(conn, q, closed["change_id"], to, verdict)
    return True
