"""Step 4, apply: the index build as a durable job (task ``pgsteady.build_index``).

One attempt of the job walks this state machine. Every arrow is safe to
repeat, so a killed worker, a lost connection or a rerun of
``pgsteady change apply`` all resume at *slot*:

    slot:   the table's lease row (changes/slots.py: one build per table, renewed
            while the build runs, taken over once a dead builder's lease passed);
            while another build holds it, wait (never touch its index)
      |
    inspect (by index name, in the catalogue)
      |-- valid, identical definition ............................ done (nothing to do)
      |-- valid, another definition .............................. failed: name taken
      |-- INVALID, built by a live backend ....................... wait, inspect again
      |-- INVALID leftover (killed build) --> DROP CONCURRENTLY --+
      '-- absent -------------------------------------------------+--> build
                                                                        |
            lock timeout: drop our INVALID leftover, back off, ---------+ (lock_retries times,
            then build again                                              then failed, naming
                                                                          the blocking pids)
            error (duplicate key, ...): drop our leftover ........ failed, nothing left behind
            success, index valid ................................. done

DROP follows the same path (absent: done; present or INVALID: drop), and
REINDEX first drops the dead ``_ccnew``/``_ccold`` companions an interrupted
REINDEX CONCURRENTLY leaves. The build connection is autocommit (CONCURRENTLY
cannot run in a transaction block) with a short ``lock_timeout`` so nothing
queues behind the DDL for longer, ``statement_timeout = 0`` so the build itself
is never cut short, and ``client_connection_check_interval`` so that when the
worker dies the server ends the build within a second instead of finishing it
for nobody: the next attempt then finds an INVALID leftover and cleans it up.

Behind a transaction pooler a session SET would land on whichever server
session ran it, and stay there for other clients, while CONCURRENTLY cannot
run inside the transaction that SET LOCAL needs. There the build sends none
of these settings and says so in the job's history: its DDL runs with the
server's defaults (no lock timeout of its own), and the slot row, not the
session, still keeps it alone on its table. Give the worker a direct DSN
(docs/deployment.md) to keep the settings.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
from psycopg import errors, sql

from ..database import connect
from ..topology import session_lasts
from ..indexes import find_overlaps
from ..indexes import invalid, sandbox
from ..indexes import probes
from ..indexes.catalog import load as load_catalog
from ..indexes.report import Thresholds
from ..retries import Retry
from ..tasks import Discard
from . import partitions, slots, states, statements
from .statements import IndexChange
from .authority import TASK, authorise
from .targets import Target, jsonb, resolve, row

QUEUE = "maintenance"


class OtherBuildRunning(Exception):
    """Another backend builds on this table; the job retries later."""


class Build:
    """One attempt of a build job; ``run()`` returns what it did, for the job result and the record.

    ``state``, ``identical``, ``run_ddl``, ``drop_leftover``, ``log`` and ``note`` are the surface the
    partitioned route (``partitions.run_route``) builds on; the rest is this class's own.
    """

    def __init__(self, app: Any, ctx: Any, args: dict[str, Any]) -> None:
        self.app, self.ctx, self.q = app, ctx, app.queries
        self.args = args
        self.asked = args.get("statement") if isinstance(args.get("statement"), str) else None
        self.lock_timeout = float(args.get("lock_timeout", 2.0))
        self.retries = int(args.get("lock_retries", 5))
        self.backoff = float(args.get("retry_backoff", 2.0))
        self.wait_other = float(args.get("wait_for_other_build", 600.0))
        self.slot_lease = float(args.get("slot_lease", slots.DEFAULT_LEASE))
        self.slot: slots.Slot | None = None
        self.step_id: int | None = None
        self.timeline: list[dict[str, Any]] = []

    # -- the attempt ----------------------------------------------------------

    def run(self) -> dict[str, Any]:
        started = time.monotonic()
        with connect(self.app.dsn, autocommit=True, pooler=self.app.pooler) as conn:
            self.conn = conn
            self._configure(conn)
            self.pid = conn.info.backend_pid
            # The change step this job runs for was written in the transaction that enqueued it;
            # without one (or with another statement than the record's) nothing runs.
            allowed = authorise(conn, self.q, self.ctx.id, self.asked)
            self.step_id, self.text = allowed.step_id, allowed.statement
            self.change: IndexChange = statements.describe(statements.parse(self.text)[0], self.text)
            self.note({"pid": self.pid, "attempt": self.ctx.attempt, "job_id": self.ctx.id})
            target = resolve(conn, self.q, self.change)
            if target.table_oid is None:
                if self.change.kind == "drop":
                    return self._done("nothing to do: the index is already gone", started)
                raise Discard(f"no table or index for {self.text!r}; check the change file")
            self._take_slot(conn, target.table_oid)
            try:
                outcome = {"create": self._create, "drop": self._drop, "reindex": self._reindex}[self.change.kind](target)
            finally:
                self.slot.release(conn)
        return self._done(outcome, started, target)

    def _configure(self, conn: psycopg.Connection) -> None:
        self.session_settings = session_lasts(conn, self.app.pooler)
        if not self.session_settings:
            sandbox.pin(conn)  # the lexing pins are PgBouncer's tracked parameters, restored per client
            self.log("through a transaction pooler: the build runs without its session settings (lock_timeout, "
                     "statement_timeout, client_connection_check_interval); give the worker a direct DSN to keep them")
            return
        conn.execute(sql.SQL("SET lock_timeout = {}").format(sql.Literal(f"{int(self.lock_timeout * 1000)}ms")))
        conn.execute("SET statement_timeout = 0")
        conn.execute("SET idle_in_transaction_session_timeout = 0")
        conn.execute(sql.SQL("SET application_name = {}").format(sql.Literal(f"pgsteady build job {self.ctx.id}")))
        if conn.info.server_version >= 140000:
            conn.execute("SET client_connection_check_interval = '1s'")
        sandbox.pin(conn)

    def _take_slot(self, conn: psycopg.Connection, table_oid: int) -> None:
        slot = self.slot = slots.Slot(self.app, table_oid, job_id=self.ctx.id, attempt=self.ctx.attempt,
                                      lease=self.slot_lease)
        deadline = time.monotonic() + self.wait_other
        said = False
        while not slot.try_take(conn):
            holder = slot.holder_now(conn)
            if not said:
                who = f"job {holder['job_id']} ({holder['holder']})" if holder else "another build"
                self.log(f"waiting: {who} holds this table's build slot", holder=holder)
                said = True
            if time.monotonic() > deadline:
                raise OtherBuildRunning(f"another build on this table ({holder['holder'] if holder else '?'}) "
                                        f"still runs after {self.wait_other:.0f}s; the job will try again")
            time.sleep(0.25)
        self.note({"slot": {"holder": slot.holder, "fencing_token": slot.token, "lease": slot.lease}})
        slot.keep(on_lost=self._slot_lost)

    def _slot_lost(self, why: str) -> None:
        """From the slot's renewal thread: stop our DDL, another build may own the table now."""
        try:
            self.conn.cancel_safe(timeout=5)
        except Exception:
            pass  # the DDL ends with the connection, or the next holds() refuses the next statement

    def _check_slot(self) -> None:
        if self.slot is not None and not self.slot.holds():
            raise slots.SlotLost(f"this build lost its table's slot ({self.slot.lost}); the job will try again")

    # -- the three kinds --------------------------------------------------------

    def _create(self, target: Target) -> str:
        if target.table_relkind == "p":
            return partitions.run_route(self, target)
        while True:
            state = self.state(target)
            if state is None:
                break
            if state["is_valid"]:
                if self.identical(target, state):
                    return "nothing to do: a valid identical index is already there"
                raise Discard(f"{target.index} exists with another definition ({state['indexdef']}); "
                              "rename the new index or drop the old one in its own change")
            if self._being_built(target, state):
                self.log(f"{target.index} is being built by another backend; waiting")
                self._wait_while_built(target, state)
                continue
            self.log(f"{target.index} is an INVALID leftover of an interrupted build; dropping it")
            self.drop_leftover(target, target.index)
        self.run_ddl(target, cleanup=lambda: self.drop_leftover(target, target.index, quiet=True))
        state = self.state(target)
        if state is None or not state["is_valid"]:
            raise RuntimeError(f"{target.index} is not valid after the build; the next attempt cleans up")
        return f"built {target.index} ({state['bytes']:,} bytes)"

    def _drop(self, target: Target) -> str:
        if self.state(target) is None:
            return "nothing to do: the index is already gone"
        self.run_ddl(target)
        return f"dropped {target.index}"

    def _reindex(self, target: Target) -> str:
        for leftover in self._reindex_leftovers(target):
            self.log(f"{leftover} is a dead leftover of an interrupted REINDEX CONCURRENTLY; dropping it")
            self.drop_leftover(target, leftover)

        def cleanup() -> None:
            for leftover in self._reindex_leftovers(target):
                self.drop_leftover(target, leftover, quiet=True)

        self.run_ddl(target, cleanup=cleanup)
        return f"reindexed {target.index or target.table}"

    # -- running DDL under a short lock timeout ---------------------------------------

    def run_ddl(self, target: Target, cleanup=None, text: str | None = None) -> None:
        text = text or self.text
        for attempt in range(1, self.retries + 1):
            watcher = _Blockers(self.app.dsn, self.q, self.pid)
            began = time.monotonic()
            self.log(f"running: {text}", attempt=attempt, pid=self.pid)
            try:
                self._check_slot()
                try:
                    with self.conn.cursor() as cur:
                        sandbox.execute_one(cur, text)  # one statement, as the parser read it
                except psycopg.Error:
                    self._check_slot()  # cancelled because the slot was lost: no cleanup, another build owns it
                    raise
                self.timeline.append({"ran": text, "seconds": round(time.monotonic() - began, 3)})
                return
            except errors.LockNotAvailable:
                blockers = watcher.stop() or probes.table_lockers(self.conn, target.table_oid)
                if cleanup:
                    cleanup()
                who = _describe_blockers(blockers)
                if attempt == self.retries:
                    self._fail(f"gave up after {self.retries} lock timeouts of {self.lock_timeout:g}s on "
                               f"{target.table}: {who}; end that transaction (or wait for it) and rerun",
                               blockers=blockers)
                delay = Retry(base=self.backoff, jitter=0).backoff(attempt)  # the one retry policy
                self.log(f"lock timeout {attempt}/{self.retries} after {self.lock_timeout:g}s, {who}; "
                          f"retrying in {delay:g}s", blockers=blockers)
                self._sleep(delay)
            except errors.UniqueViolation as exc:
                if cleanup:
                    cleanup()
                detail = exc.diag.message_detail or ""
                self._fail(f"the unique index cannot be built: {exc.diag.message_primary}"
                           f"{' (' + detail + ')' if detail else ''}; nothing was left behind. "
                           "Fix the duplicate rows, then rerun `pgsteady change apply`")
            except psycopg.OperationalError:
                raise  # connection lost: the next attempt inspects and cleans up
            except psycopg.DatabaseError as exc:
                if cleanup:
                    cleanup()
                self._fail(f"{text!r} failed: {str(exc).strip().splitlines()[0]}; nothing was left behind")
            finally:
                watcher.stop()

    def drop_leftover(self, target: Target, qualified: str, quiet: bool = False) -> None:
        """Drop an INVALID index left by an interrupted build, concurrently, under the same lock rules."""
        found = probes.resolve_relation(self.conn, qualified)
        if found is None:
            return  # nothing was created before the failure
        schema, name = found["schema"], found["name"]
        text = sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name)).as_string(self.conn)
        if quiet:
            self.log(f"cleaning up: {text}")
        self.run_ddl(target, text=text)

    # -- inspection -------------------------------------------------------------

    def state(self, target: Target) -> dict[str, Any] | None:
        found = probes.resolve_relation(self.conn, target.index) if target.index else None
        return probes.index_state(self.conn, found["oid"]) if found else None

    def identical(self, target: Target, state: dict[str, Any]) -> bool:
        same = [o for o in find_overlaps(self.conn, target.table, self.change.node)
                if o.kind == "duplicate" and o.index == target.index]
        return bool(same) and bool(state["is_unique"]) == self.change.unique

    def _invalid_findings(self, table_oid: int):
        snap = load_catalog(self.conn, schema=None, table_oid=table_oid, thresholds=Thresholds())
        return list(invalid.findings(snap))

    def _being_built(self, target: Target, state: dict[str, Any]) -> bool:
        for finding in self._invalid_findings(state["table_oid"]):
            if finding.objects[0] == target.index:
                return finding.evidence.get("state") == "building"
        return False

    def _wait_while_built(self, target: Target, state: dict[str, Any]) -> None:
        deadline = time.monotonic() + self.wait_other
        while self._being_built(target, state):
            if time.monotonic() > deadline:
                raise OtherBuildRunning(f"{target.index} is still being built by another backend; the job will try again")
            time.sleep(0.25)

    def _reindex_leftovers(self, target: Target) -> list[str]:
        found = []
        for finding in self._invalid_findings(target.table_oid):
            ev = finding.evidence
            if ev.get("state") != "building" and ev.get("reindex_leftover") and \
                    (target.index is None or ev.get("original_index") == target.index):
                found.append(finding.objects[0])
        return found

    # -- reporting --------------------------------------------------------------------

    def log(self, message: str, **data: Any) -> None:
        self.timeline.append({"at": time.time(), "message": message})
        self.ctx.log(message, **{k: v for k, v in data.items() if v is not None})

    def note(self, details: dict[str, Any]) -> None:
        if self.step_id is not None:
            with connect(self.app.dsn, autocommit=True) as c:
                c.execute(self.q.note_step, {"id": self.step_id, "details": jsonb(details)})

    def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.ctx.cancelled:
                raise Discard("cancelled while waiting to retry the build")
            time.sleep(max(0.0, min(0.1, deadline - time.monotonic())))

    def _fail(self, message: str, **details: Any) -> None:
        finish(self.app, self.step_id, "failed", message, {"timeline": self.timeline, **details})
        raise Discard(message)

    def _done(self, outcome: str, started: float, target: Target | None = None) -> dict[str, Any]:
        result = {"outcome": outcome, "seconds": round(time.monotonic() - started, 3), "timeline": self.timeline,
                  "index": target.index if target else None, "table": target.table if target else None}
        finish(self.app, self.step_id, "done", outcome, result)
        return result


def finish(app: Any, step_id: int | None, status: str, summary: str, details: dict[str, Any]) -> None:
    """Close the change step this job runs for; the state model moves the change."""
    if step_id is None:
        return
    with connect(app.dsn, autocommit=True) as conn:
        states.end_step(conn, app.queries, step_id, status, summary, details)


class _Blockers:
    """Watches who the build waits for, on a connection of its own, while the DDL runs.

    After a lock timeout the wait is over and pg_blocking_pids has nothing
    to say any more; this remembers the last answer it gave during the wait.
    """

    def __init__(self, dsn: str, q: Any, pid: int) -> None:
        self.seen: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(dsn, q, pid), daemon=True)
        self._thread.start()

    def _watch(self, dsn: str, q: Any, pid: int) -> None:
        try:
            with connect(dsn, autocommit=True) as conn:
                while not self._stop.wait(0.05):
                    found = probes.blockers(conn, pid)
                    if found:
                        self.seen = found
        except Exception:  # watching is best effort; the lock query after the timeout remains
            pass

    def stop(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join(2)
        return self.seen


def _describe_blockers(blockers: list[dict[str, Any]]) -> str:
    if not blockers:
        return "no blocking session seen (it may have ended)"
    parts = []
    for b in blockers[:3]:
        query = " ".join((b.get("query") or "").split())[:120]
        age = f", transaction open {b['xact_seconds']:.0f}s" if b.get("xact_seconds") else ""
        parts.append(f"pid {b['pid']} ({b.get('state') or '?'}{age}: {query!r})")
    return "blocked by " + "; ".join(parts)
