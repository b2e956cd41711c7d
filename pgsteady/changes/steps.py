"""The steps of a change, in order, each recorded: lint -> plan -> rehearse -> apply -> verify.

A command runs its own step, after any earlier step not yet done for this
content of the file: ``change apply`` after ``change plan`` runs the
rehearsal (unless the file skips it) and then the build, without planning
again. Every run of a step is a row in ``change_steps`` with the exact
command line, and the Markdown note is rewritten after each.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any, Callable


import psycopg

from ..database import connect
from ..errors import PgsteadyError
from ..indexes import sandbox
from ..migrations import check_current
from ..queries import for_schema
from . import cleanup, files, measure, record, rehearse as rehearsal, states, verify as verification, writes
from .build import TASK
from .lint import LintResult, lint, recheck
from .targets import jsonb, one_line, resolve, row
from .tasks import register


class ChangeRefused(PgsteadyError):
    """Lint refused the change: a negative answer, not an error."""

    exit_code = 1


class ChangeFailed(PgsteadyError):
    """A step could not do its work (the build failed, nothing to roll back)."""


class Session:
    """One command's work on one change file, on one autocommit connection."""

    task = TASK  # the job that runs apply and rollback

    def __init__(self, dsn: str, schema: str, path: str | Path, command: str, app: Any = None) -> None:
        self.change = files.load(path)
        self.dsn, self.schema, self.command = dsn, schema, command
        self.q = for_schema(schema)
        self.conn = connect(dsn, autocommit=True)
        sandbox.pin(self.conn)  # the change file's text is lexed by the server as pglast lexed it
        check_current(self.conn, schema)
        self._app = app
        self.linted: LintResult | None = None

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    @property
    def app(self) -> Any:
        if self._app is None:
            from ..app import App

            self._app = App(dsn=self.dsn, schema=self.schema)
        register(self._app)  # the build task is enqueued by name, so the App must know it
        return self._app

    # -- bookkeeping --------------------------------------------------------------------

    def _steps(self) -> list[dict[str, Any]]:
        record.sync_with_jobs(self.conn, self.q, self.change.id)
        return record.get(self.conn, self.q, self.change.id)["steps"]

    def _run(self, step: str, work: Callable[[], tuple[str, dict[str, Any] | None]]) -> dict[str, Any] | None:
        states.check(self.conn, self.q, self.change.id, step)
        step_id = states.start_step(self.conn, self.q, self.change, step, self.command)
        try:
            summary, details = work()
        except ChangeRefused as exc:
            states.end_step(self.conn, self.q, step_id, "refused", str(exc))
            self.note()
            raise
        except Exception as exc:
            line = one_line(exc)
            states.end_step(self.conn, self.q, step_id, "failed", line)
            self.note()
            if isinstance(exc, psycopg.Error):
                raise ChangeFailed(f"{step} of change {self.change.id} failed: {line}; recorded as a failed step") from None
            raise
        states.end_step(self.conn, self.q, step_id, "done", summary, details,
                        verdict=(details or {}).get("verdict") if step == "verify" else None)
        self.note()
        return details

    def note(self) -> Path:
        return record.write_note(self.conn, self.q, self.change)

    def require(self, step: str) -> None:
        """Run every step before ``step`` that is not done for this file yet."""
        done = record.done_steps(self._steps(), self.change.sha) if self._known() else set()
        for earlier in record.ORDER[: record.ORDER.index(step)]:
            if earlier in done:
                continue
            if earlier == "apply":
                raise ChangeFailed(f"change {self.change.id} is not applied yet; run `pgsteady change apply {self.change.path}`")
            getattr(self, earlier)()

    def _known(self) -> bool:
        return row(self.conn, self.q.get_change, {"id": self.change.id}) is not None

    # -- the steps ------------------------------------------------------------------

    def lint(self) -> LintResult:
        result = lint(self.change, self.conn, self.q)
        self.linted = result
        record.ensure(self.conn, self.q, self.change, result.rollback)

        def work():
            if result.refused:
                rules = ", ".join(f.rule for f in result.findings if f.severity == "refuse")
                raise ChangeRefused(f"lint refused change {self.change.id}: {rules}")
            notes = [f.rule for f in result.findings]
            return ("ok" + (f" (notes: {', '.join(notes)})" if notes else "")), result.to_json()

        self._run("lint", work)
        return result

    def _target(self):
        st = self.change.statement()
        return st, resolve(self.conn, self.q, st)

    def plan(self) -> dict[str, Any]:
        self.require("plan")
        st, target = self._target()

        def work():
            figures = measure.plan(self.change, self.conn, self.q, st, target, self.dsn)
            self.conn.execute(self.q.set_change_plan, {"id": self.change.id, "figures": jsonb(figures)})
            parts = [f"{f['name']} median {f['median_ms']:.2f} ms" for f in figures["queries"]]
            return "; ".join(parts) or "table captured (no queries)", {"seconds": figures["seconds"]}

        self._run("plan", work)
        return record.get(self.conn, self.q, self.change.id)["plan"]

    def cleanup(self) -> cleanup.Swept:
        """Drop what killed commands left behind (scratch schemas, open steps)."""
        return cleanup.sweep(self.conn, self.q)

    def rehearse(self) -> dict[str, Any] | None:
        self.cleanup()
        self.require("rehearse")
        if self.change.skip_rehearsal:
            states.check(self.conn, self.q, self.change.id, "rehearse")
            step_id = states.start_step(self.conn, self.q, self.change, "rehearse", self.command)
            states.end_step(self.conn, self.q, step_id, "skipped", "skipped: the change file says [rehearse] skip = true")
            self.note()
            return None
        st, target = self._target()

        def work():
            figures = rehearsal.rehearse(self.change, self.conn, self.q, st, target)
            self.conn.execute(self.q.set_change_rehearsal, {"id": self.change.id, "figures": jsonb(figures)})
            return (f"copied {figures['copied_rows']:,} rows in {figures['timings']['copy']:.2f}s, change took "
                    f"{figures['timings']['apply']:.2f}s on the copy, copy dropped"), {"seconds": figures["seconds"]}

        self._run("rehearse", work)
        return record.get(self.conn, self.q, self.change.id)["rehearsal"]

    def apply(self) -> tuple[int, int, bool]:
        """Enqueue the build (once): returns (job id, step id, created)."""
        self.cleanup()
        self.require("apply")
        return self._enqueue("apply", self.change.ddl)

    def rollback(self) -> tuple[int, int, bool]:
        if not self._known():
            self.lint()
        rollback = record.get(self.conn, self.q, self.change.id)["rollback"]
        if not rollback:
            raise ChangeFailed(f"change {self.change.id} has no rollback (a REINDEX changes no definition); "
                               "write rollback = \"...\" in the change file if one is needed")
        checked = recheck(rollback, self.conn, self.q)
        if checked.refused:
            raise ChangeRefused("the rollback would hurt: " + "; ".join(f"{f.rule}: {f.message}" for f in checked.findings))
        return self._enqueue("rollback", rollback)

    def _enqueue(self, step: str, statement: str) -> tuple[int, int, bool]:
        steps = self._steps()
        for s in reversed(steps):  # a build of this kind already under way: follow it
            if s["step"] == step and s["status"] in ("queued", "running") and s["job_id"]:
                return s["job_id"], s["id"], False
        states.check(self.conn, self.q, self.change.id, step)
        baseline = self._write_counters()  # what writes cost before the change, for verify to compare
        # The key holds while the job waits, runs, or recently succeeded; after a
        # rollback (or an apply, for a rollback) a new key lets the same step run again.
        other = "rollback" if step == "apply" else "apply"
        since = [s["id"] for s in steps if s["step"] == other and s["status"] == "done"]
        key = f"change:{self.change.id}:{step}" + (f":{since[-1]}" if since else "")
        args = {"statement": statement, "change_id": self.change.id, "lock_timeout": self.change.lock_timeout,
                "lock_retries": self.change.lock_retries, "retry_backoff": self.change.retry_backoff,
                "wait_for_other_build": self.change.wait_for_other_build, "slot_lease": self.change.slot_lease}
        with self.conn.transaction():
            ref = self.app.enqueue(self.task, args, key=key, conn=self.conn)
            existing = [s for s in steps if s["job_id"] == ref.id]
            if existing:
                return ref.id, existing[-1]["id"], False
            # In the enqueue's transaction: the job can never run without its step.
            step_id = states.start_step(self.conn, self.q, self.change, step, self.command, queued=True,
                                        job_id=ref.id, details={"write_baseline": baseline})
        self.note()
        return ref.id, step_id, ref.created

    def _write_counters(self) -> dict[str, Any] | None:
        st = self.change.statement()
        if st is None:
            return None
        target = resolve(self.conn, self.q, st)
        return writes.snapshot(self.conn, self.q, target.table_oid, target.table_relkind, target.table)

    def verify(self, watch_seconds: float | None = None, on_tick=None) -> dict[str, Any]:
        self.require("verify")
        current = record.get(self.conn, self.q, self.change.id)
        applied = [s for s in current["steps"] if s["step"] == "apply" and s["status"] == "done"]
        applied_at: datetime | None = applied[-1]["finished_at"] if applied else None
        seconds = self.change.watch_seconds if watch_seconds is None else watch_seconds

        baseline = (applied[-1]["details"] or {}).get("write_baseline") if applied else None

        def work():
            figures = verification.verify(self.change, self.conn, self.q, current["plan"], applied_at, seconds, on_tick,
                                          write_baseline=baseline, write_counters=self._write_counters)
            self.conn.execute(self.q.set_change_verify, {"id": self.change.id, "figures": jsonb(figures)})
            return f"{figures['verdict']}: {figures['why']}", {"verdict": figures["verdict"]}

        self._run("verify", work)
        return record.get(self.conn, self.q, self.change.id)["verify"]
