"""Leftovers of commands that were killed: scratch schemas, steps left open.

A rehearsal copies whole tables into ``pgsteady_rehearsal_<n>`` and drops
the schema when it ends, also when it fails; a ``kill -9`` (or a lost
machine) skips that. Each scratch schema carries a comment naming the
backend that made it (pid and start time), and each step a command runs
records its backend the same way, so a leftover is told from work in
progress by asking whether that backend is still alive. ``sweep`` drops
the schemas of dead backends, closes their steps as failed, and closes the
steps of build jobs that ended without closing them (``record.sync_with_jobs``).

It runs at the start of every ``change rehearse`` and ``change apply``, and
on its own as ``pgsteady change cleanup``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from ..queries import Queries
from ..indexes import probes
from . import record, states
from .targets import rows


@dataclass
class Swept:
    schemas: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # leftovers this role may not drop, with the reason

    def __bool__(self) -> bool:
        return bool(self.schemas or self.steps or self.refused)

    def describe(self) -> str:
        if not self:
            return "nothing to clean up"
        parts = []
        if self.schemas:
            parts.append(f"dropped {len(self.schemas)} leftover rehearsal schema(s): {', '.join(self.schemas)}")
        if self.refused:
            parts.append(f"could not drop {len(self.refused)} leftover(s): {'; '.join(self.refused)}")
        if self.steps:
            parts.append(f"closed {len(self.steps)} step(s) left open by a process that ended: "
                         + ", ".join(map(str, self.steps)))
        return "; ".join(parts)


def owner(conn: psycopg.Connection, q: Queries) -> dict[str, Any]:
    """This backend, as a leftover would name it (the same shape as a step's ``details.backend``)."""
    return states.backend(conn, q)


def mark_schema(conn: psycopg.Connection, q: Queries, schema: str) -> None:
    conn.execute(sql.SQL("COMMENT ON SCHEMA {} IS {}").format(
        sql.Identifier(schema), sql.Literal(json.dumps({"pgsteady_rehearsal": owner(conn, q)}))))


def _alive(conn: psycopg.Connection, q: Queries, owners: list[dict[str, Any]]) -> set[tuple[int, str]]:
    pids = sorted({o["pid"] for o in owners if isinstance(o.get("pid"), int)})
    if not pids:
        return set()
    live = probes.backends(conn, pids)
    # backend_start is hidden from other roles' sessions: then the pid alone decides.
    return {(r["pid"], r["backend_start"].isoformat() if r["backend_start"] else "*") for r in live}


def _is_alive(who: dict[str, Any] | None, alive: set[tuple[int, str]]) -> bool:
    if not who or not isinstance(who.get("pid"), int):
        return False
    return (who["pid"], who.get("backend_start")) in alive or (who["pid"], "*") in alive


def sweep(conn: psycopg.Connection, q: Queries) -> Swept:
    swept = Swept()
    schemas = []
    for r in probes.rehearsal_schemas(conn):
        try:
            who = json.loads(r["owner"] or "{}").get("pgsteady_rehearsal")
        except (ValueError, AttributeError):
            who = None
        schemas.append((r["schema"], who))
    steps = [(s, (s["details"] or {}).get("backend")) for s in rows(conn, q.open_command_steps, {})]
    alive = _alive(conn, q, [w for _, w in schemas if w] + [w for _, w in steps if w])
    for schema, who in schemas:
        if not _is_alive(who, alive):
            try:
                with conn.transaction():
                    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
            except psycopg.Error as exc:  # another role's copy: say so, and let this command go on
                swept.refused.append(f"{schema} ({str(exc).strip().splitlines()[0]})")
                continue
            swept.schemas.append(schema)
    for step, who in steps:
        if not _is_alive(who, alive) and states.end_step(
                conn, q, step["id"], "failed", f"the process running this {step['step']} ended before it "
                "finished (killed?); its leftovers were cleaned up"):
            swept.steps.append(step["id"])
    for r in rows(conn, q.open_job_changes, {}):
        record.sync_with_jobs(conn, q, r["change_id"])
    return swept
