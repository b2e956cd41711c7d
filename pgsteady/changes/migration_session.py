"""The steps of a migration change: the same lint -> plan -> rehearse -> apply -> verify, recorded the same way.

What differs from an index change: plan captures every table the statements
name (no HypoPG: there is no one index to ask about), rehearse runs each
statement on a copy and measures it (``migration_rehearse``), apply and
rollback run as ``pgsteady.run_migration`` (``migration_apply``), and a
rollback must be written in the file (a migration has no derived way back).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any

from ..indexes import probes
from . import measure, migration_rehearse, record
from .migration_apply import TASK
from .migration_lint import is_migration, lint_text
from .steps import ChangeFailed, ChangeRefused, Session
from .targets import jsonb


def open_session(dsn: str, schema: str, path, command: str, app: Any = None) -> Session:
    """The session for a change file: a migration's, or an index change's."""
    from .files import load

    cls = MigrationSession if is_migration(load(path).ddl) else Session
    return cls(dsn, schema, path, command, app=app)


def summary(figures: dict[str, Any]) -> str:
    """One line per rehearsal: what the worst statement held, and what it rewrote."""
    ran = [s for s in figures["statements"] if s["status"] == "done"]
    failed = [s for s in figures["statements"] if s["status"] == "failed"]
    worst = max(ran, key=lambda s: s["held_seconds"] if s["strongest"] == "AccessExclusiveLock" else 0, default=None)
    parts = [f"{len(ran)} of {len(figures['statements'])} statements ran on a copy of "
             f"{figures['copied_rows']:,} rows"]
    if worst is not None and worst["strongest"]:
        parts.append(f"longest {worst['strongest']}: {worst['held_seconds']:.2f}s (statement {worst['index']})")
    rewrites = sorted({t for s in ran for t in s["rewrote"]})
    parts.append(f"rewrote {', '.join(rewrites)}" if rewrites else "no table rewritten")
    if failed:
        parts.append(f"statement {failed[0]['index']} (line {failed[0]['line']}) failed: {failed[0]['error']}")
    return "; ".join(parts)


class MigrationSession(Session):
    task = TASK

    def plan(self) -> dict[str, Any]:
        self.require("plan")

        def work():
            started = time.monotonic()
            self.conn.execute("SET statement_timeout = '5min'")
            steps = lint_text(self.change.ddl, "change").steps
            tables = migration_rehearse.tables_named(self.conn, self.q, steps)
            figures = {"captured_at": datetime.now(timezone.utc).isoformat(),
                       "server_version": probes.server_facts(self.conn)["version"],
                       "tables": [measure.table_facts(self.conn, self.q, oid) for oid in tables],
                       "statements": [{"index": s.index, "line": s.line, "sql": s.text} for s in steps],
                       "queries": [measure.explain(self.conn, query) for query in self.change.queries]}
            figures["seconds"] = round(time.monotonic() - started, 3)
            self.conn.execute(self.q.set_change_plan, {"id": self.change.id, "figures": jsonb(figures)})
            sizes = ", ".join(f"{t['qualified']} {t['estimated_rows']:,} rows" for t in figures["tables"])
            return f"{len(steps)} statements on {sizes or 'new tables only'}", {"seconds": figures["seconds"]}

        self._run("plan", work)
        return record.get(self.conn, self.q, self.change.id)["plan"]

    def rehearse(self) -> dict[str, Any] | None:
        if self.change.skip_rehearsal:
            return super().rehearse()  # recorded as skipped, the same way
        self.require("rehearse")

        def work():
            figures = migration_rehearse.rehearse(self.change, self.conn, self.q, self.dsn)
            self.conn.execute(self.q.set_change_rehearsal, {"id": self.change.id, "figures": jsonb(figures)})
            line = summary(figures)
            if any(s["status"] == "failed" for s in figures["statements"]):
                raise ChangeFailed(f"rehearsal of change {self.change.id}: {line}")
            return line, {"seconds": figures["seconds"]}

        self._run("rehearse", work)
        return record.get(self.conn, self.q, self.change.id)["rehearsal"]

    def rollback(self) -> tuple[int, int, bool]:
        if not self._known():
            self.lint()
        rollback = record.get(self.conn, self.q, self.change.id)["rollback"]
        if not rollback:
            raise ChangeFailed(f"change {self.change.id} is a migration and has no rollback; write "
                               "rollback = \"...\" in the change file (the statements that undo it)")
        checked = lint_text(rollback, "change")
        if checked.refused:
            raise ChangeRefused("the rollback would hurt: " + "; ".join(
                f"{f.rule} (line {f.line}): {f.message}" for f in checked.findings if f.severity == "refuse"))
        return self._enqueue("rollback", rollback)
