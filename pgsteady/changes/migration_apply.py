"""Apply a migration: its statements as steps of one change, run by a durable job, each recorded.

``change apply`` on a change file whose ddl is a migration enqueues
``pgsteady.run_migration`` with one apply step, as an index change enqueues
its build, and the same authority stands behind it (``authority.authorise``:
a recorded, linted step, the statement word for word, lint again now). One
attempt of the job:

    for each statement, in order
      |-- recorded done by an earlier apply of this change ......... skip
      |-- SET lock_timeout / statement_timeout ...................... skip (pgsteady sets them)
      '-- run it under lock_timeout; a lock timeout rolls it back,
          backs off and tries again (lock_retries times, then failed)
          - a statement that can run in a transaction runs in one
            together with the line of the record that says it is done,
            so a kill leaves it either done and recorded, or neither
          - CONCURRENTLY runs on its own; an INVALID index it leaves
            behind is dropped before the next try
    last statement done ............................................ the apply step is done

Each statement's line in the step's ``details.statements`` has its
seconds, attempts and lock timeouts; the note lists them.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import psycopg
from pglast import ast
from psycopg import errors, sql

from ..database import connect
from ..indexes import sandbox
from ..tasks import Discard
from ..indexes import probes
from . import states
from .authority import TASK as BUILD_TASK, Refused, authorise
from .migration_lint import Statement, is_migration, split
from .migration_rules import table_of
from .targets import jsonb, one_line, row, rows

TASK = "pgsteady.run_migration"


def done_before(conn: psycopg.Connection, q: Any, change_id: str, step: str, step_id: int) -> Counter:
    """Statements of ``step`` recorded done (by text, with how many times) by this run or an earlier
    one since the last opposite step: a rerun after a failure goes on where it stopped."""
    done: Counter = Counter()
    for s in rows(conn, q.change_steps, {"change_id": change_id}):
        if s["step"] != step and s["step"] in ("apply", "rollback") and s["status"] == "done":
            done = Counter()  # a rollback after an apply (or the reverse) starts the count again
        elif s["step"] == step and (s["id"] == step_id or s["status"] != "queued"):
            done.update(d["sql"] for d in (s["details"] or {}).get("statements", []) if d["status"] == "done")
    return done


def _skipped(st: Statement) -> bool:
    """BEGIN/COMMIT (lint refuses them) and the timeouts, which pgsteady sets; other SETs run."""
    node = st.node
    return isinstance(node, ast.TransactionStmt) or (
        isinstance(node, ast.VariableSetStmt) and node.name in ("lock_timeout", "statement_timeout"))


class MigrationRun:
    """One attempt of a migration job; ``run()`` returns what it did."""

    def __init__(self, app: Any, ctx: Any, args: dict[str, Any]) -> None:
        self.app, self.ctx, self.q = app, ctx, app.queries
        self.asked = args.get("statement") if isinstance(args.get("statement"), str) else None
        self.lock_timeout = float(args.get("lock_timeout", 2.0))
        self.retries = int(args.get("lock_retries", 5))
        self.backoff = float(args.get("retry_backoff", 2.0))
        self.step_id: int | None = None
        self.records: list[dict[str, Any]] = []

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        with connect(self.app.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{int(self.lock_timeout * 1000)}ms")))
            conn.execute("SET statement_timeout = 0")
            sandbox.pin(conn)  # the server lexes the statements as pglast did
            conn.execute(sql.SQL("SET application_name = {}").format(sql.Literal(f"pgsteady migration job {self.ctx.id}")))
            if conn.info.server_version >= 140000:  # a killed worker's statement ends within a second
                conn.execute("SET client_connection_check_interval = '1s'")
            allowed = authorise(conn, self.q, self.ctx.id, self.asked)
            if not is_migration(allowed.statement):
                raise Refused(f"refused: change {allowed.change_id} is one index change; it runs as "
                              f"{BUILD_TASK}, not {TASK}", allowed.step_id)
            self.step_id = allowed.step_id
            step = row(conn, self.q.get_step, {"id": self.step_id})
            self.records = list((step["details"] or {}).get("statements", []))
            done = done_before(conn, self.q, allowed.change_id, allowed.step, self.step_id)
            steps = [s for s in split(allowed.statement) if not _skipped(s)]
            for st in steps:
                if done[st.text] and not isinstance(st.node, ast.VariableSetStmt):  # a new session needs its SETs
                    done[st.text] -= 1  # the same text twice in a file is two statements
                    continue
                self._one(conn, st, len(steps))
        ran = sum(r["status"] == "done" for r in self.records)
        summary = f"ran {ran} statement(s) in {time.monotonic() - started:.2f}s; all {len(steps)} applied"
        with connect(self.app.dsn, autocommit=True) as conn:
            states.end_step(conn, self.q, self.step_id, "done", summary, {"statements": self.records})
        return {"outcome": summary, "statements": self.records}

    def _one(self, conn: psycopg.Connection, st: Statement, total: int) -> None:
        entry = {"index": st.index, "line": st.line, "sql": st.text, "of": total, "status": "done",
                 "attempts": 0, "lock_timeouts": 0}
        began = time.monotonic()
        while True:
            entry["attempts"] += 1
            self.ctx.log(f"statement {st.index}/{total} (line {st.line}), attempt {entry['attempts']}: {st.heading}")
            try:
                if st.transactional:
                    with conn.transaction(), conn.cursor() as cur:
                        sandbox.execute_one(cur, st.text)  # one statement, as the parser read it
                        entry["seconds"] = round(time.monotonic() - began, 3)
                        self._record(conn, entry)  # in the statement's transaction: done and recorded together
                else:
                    with conn.cursor() as cur:
                        sandbox.execute_one(cur, st.text)
                    entry["seconds"] = round(time.monotonic() - began, 3)
                    self._record(conn, entry)
                return
            except errors.LockNotAvailable:
                entry["lock_timeouts"] += 1
                self._drop_invalid(conn, st)
                if entry["attempts"] >= self.retries:
                    self._fail(conn, entry, f"gave up after {self.retries} lock timeouts of {self.lock_timeout:g}s")
                delay = self.backoff * 2 ** (entry["attempts"] - 1)
                self.ctx.log(f"lock timeout on statement {st.index}; retrying in {delay:g}s")
                self._sleep(delay)
            except psycopg.OperationalError:
                raise  # the connection is gone: the next attempt resumes at this statement
            except psycopg.DatabaseError as exc:
                self._drop_invalid(conn, st)
                self._fail(conn, entry, str(exc).strip().splitlines()[0])

    def _record(self, conn: psycopg.Connection, entry: dict[str, Any]) -> None:
        self.records = [r for r in self.records if (r["index"], r["sql"]) != (entry["index"], entry["sql"])] + [dict(entry)]
        conn.execute(self.q.note_step, {"id": self.step_id, "details": jsonb({"statements": self.records})})

    def _fail(self, conn: psycopg.Connection, entry: dict[str, Any], error: str) -> None:
        entry.update(status="failed", error=error)
        self.records = [r for r in self.records if (r["index"], r["sql"]) != (entry["index"], entry["sql"])] + [dict(entry)]
        done = sum(r["status"] == "done" for r in self.records)
        message = (f"statement {entry['index']} (line {entry['line']}) failed: {error}; {done} statement(s) "
                   "before it are applied and recorded; fix it and rerun `pgsteady change apply`, which goes on "
                   "from there")
        states.end_step(conn, self.q, self.step_id, "failed", message, {"statements": self.records})
        raise Discard(message)

    def _drop_invalid(self, conn: psycopg.Connection, st: Statement) -> None:
        """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index: drop it before trying again."""
        node = st.node
        if not (isinstance(node, ast.IndexStmt) and node.concurrent and node.idxname):
            return
        table = probes.resolve_relation(conn, table_of(node))
        if table is None:
            return
        name = sql.Identifier(table["schema"], node.idxname)
        index = probes.resolve_relation(conn, name.as_string(conn))
        state = probes.index_state(conn, index["oid"]) if index else None
        if state is not None and not state["is_valid"]:
            self.ctx.log(f"dropping the INVALID leftover {state['qualified']}")
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(name))

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.ctx.cancelled:
                raise Discard("cancelled while waiting to retry the migration")
            time.sleep(max(0.0, min(0.1, deadline - time.monotonic())))


def register(app: Any, queue: str, retry: Any, max_attempts: int) -> None:
    """Register ``pgsteady.run_migration`` on ``app`` (once), with the build task's queue and retries."""
    if TASK in app.tasks:
        return

    @app.task(name=TASK, queue=queue, max_attempts=max_attempts, retry=retry)
    def run_migration(ctx, **args: Any) -> dict[str, Any]:
        """Run a recorded migration change, statement by statement (pgsteady/changes/migration_apply.py)."""
        run = MigrationRun(app, ctx, args)
        try:
            return run.run()
        except Exception as exc:
            # The job ends here (Discard, or no attempt left): the step and the change say so now.
            step_id = run.step_id if run.step_id is not None else getattr(exc, "step_id", None)
            if (isinstance(exc, Discard) or ctx.attempt >= ctx.max_attempts) and step_id is not None:
                with connect(app.dsn, autocommit=True) as conn:
                    states.end_step(conn, app.queries, step_id, "failed", one_line(exc), {"statements": run.records})
            raise
