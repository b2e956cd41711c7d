"""Step 1, lint: refuse what would hurt, before anything touches the table.

Each rule has a name and a one-line reason (``RULES``); a finding is a
``refuse`` (the change may not go ahead) or a ``note`` (worth reading).
The syntax rules need no database; the rest read the catalogue and reuse
the index health checks (``pgsteady.indexes.find_overlaps``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import psycopg
from pglast import ast

from ..indexes import find_overlaps
from ..indexes import probes
from ..queries import Queries
from . import partitions, statements, writes
from .files import ChangeFile
from .statements import IndexChange, StatementError
from .targets import Target, derive_rollback, resolve

RULES = {
    "parse-error": "the DDL must parse as PostgreSQL SQL",
    "multiple-statements": "one change is one statement on one index, so it can be retried and rolled back alone",
    "transaction-block": "CREATE/DROP/REINDEX ... CONCURRENTLY cannot run inside a transaction block",
    "not-an-index-change": "a change file creates, drops or reindexes one index; other DDL needs its own review",
    "unnamed-index": "the index needs a name, so that a rerun finds it and the rollback can drop it",
    "non-concurrent-create": "CREATE INDEX without CONCURRENTLY blocks every write to the table for the whole build",
    "non-concurrent-drop": "DROP INDEX without CONCURRENTLY takes an ACCESS EXCLUSIVE lock: every read queues behind it",
    "non-concurrent-reindex": "REINDEX without CONCURRENTLY blocks writes, and reads that use the index, for the whole rebuild",
    "duplicate-index": "an identical index already exists: a second one only adds write cost and disk",
    "redundant-index": "an existing index already serves every lookup this one would",
    "partitioned-parent": "CREATE INDEX CONCURRENTLY cannot build on a partitioned table; build per partition and attach",
    "partitioned-drop": "DROP INDEX CONCURRENTLY refuses a partitioned index and an index attached to one",
    "hot-updates-stop": "the workload's UPDATEs change a column the index covers: those updates stop being HOT",
    "partitioned-route": "on a partitioned table, apply runs the whole route: ON ONLY the parent, each partition "
                         "concurrently, attach each",
    "concurrent-build-bug": "PostgreSQL 14.0 to 14.3 can corrupt indexes built CONCURRENTLY; upgrade to 14.4 or later",
    "unknown-table": "the table the change is on must exist",
    "unknown-index": "the index a DROP or REINDEX names must exist",
    "name-taken": "another relation already has the index's name",
    "constraint-index": "an index that backs a constraint is dropped with its constraint, under a table lock",
    "if-not-exists": "IF NOT EXISTS would count a different index of the same name as done",
    "makes-redundant": "the new index makes an existing one redundant; drop it in a follow-up change",
    "already-applied": "a valid identical index already exists under this name: apply will have nothing to do",
    "invalid-leftover": "an INVALID index of this name is left from an interrupted build; apply drops it and builds again",
}


def concurrent_build_bug(version_num: int) -> bool:
    """PostgreSQL 14.0-14.3: CREATE INDEX / REINDEX CONCURRENTLY could miss rows (fixed in 14.4)."""
    return 140000 <= version_num < 140004


@dataclass
class Finding:
    rule: str
    severity: str  # refuse | note
    message: str

    @property
    def reason(self) -> str:
        return RULES[self.rule]


@dataclass
class LintResult:
    findings: list[Finding] = field(default_factory=list)
    statement: IndexChange | None = None
    target: Target | None = None
    rollback: str | None = None
    server_version: str | None = None

    @property
    def refused(self) -> bool:
        return any(f.severity == "refuse" for f in self.findings)

    def add(self, rule: str, message: str, severity: str = "refuse") -> None:
        self.findings.append(Finding(rule, severity, message))

    def to_json(self) -> dict[str, Any]:
        return {"ok": not self.refused, "server_version": self.server_version, "rollback": self.rollback,
                "findings": [{**asdict(f), "reason": f.reason} for f in self.findings]}


def lint(change: ChangeFile, conn: psycopg.Connection | None, q: Queries | None) -> LintResult:
    """Every rule against the change; the catalogue rules only with a connection."""
    from . import migration_lint  # it builds on this module's index rules

    if migration_lint.is_migration(change.ddl):  # several statements, or not an index change
        return migration_lint.lint_change(change, conn, q)
    result = LintResult()
    statement = _syntax(change.ddl, result)
    result.statement = statement
    if statement is None:
        return result
    if conn is not None and q is not None:
        _catalogue(statement, conn, q, result)
    if change.rollback is None:
        result.rollback = derive_rollback(statement, result.target)
    else:
        result.rollback = change.rollback
        _syntax(change.rollback, LintResult())  # a rollback that does not parse is an error now, not later
    return result


def recheck(text: str, conn: psycopg.Connection, q: Queries) -> LintResult:
    """The rules for one statement as it is about to run (the build job asks, and the rollback)."""
    from . import migration_lint

    if migration_lint.is_migration(text):  # the migration job asks too
        return migration_lint.lint_text(text, "change", migration_lint.Catalogue(conn, q))
    result = LintResult()
    statement = result.statement = _syntax(text, result)
    if statement is not None:
        _catalogue(statement, conn, q, result)
    return result


def syntax(text: str) -> LintResult:
    """The rules that need no database, for one statement."""
    result = LintResult()
    result.statement = _syntax(text, result)
    return result


def _syntax(text: str, result: LintResult) -> IndexChange | None:
    try:
        nodes = statements.parse(text)
    except StatementError as exc:
        result.add("parse-error", str(exc))
        return None
    if any(isinstance(n, ast.TransactionStmt) for n in nodes):
        result.add("transaction-block", "remove BEGIN/COMMIT: the build runs on its own autocommit connection")
        nodes = [n for n in nodes if not isinstance(n, ast.TransactionStmt)]
    if len(nodes) != 1:
        result.add("multiple-statements", f"found {len(nodes)} statements; write one change file per index")
        return None
    change = statements.describe(nodes[0], text)
    if change is None:
        result.add("not-an-index-change", f"{type(nodes[0]).__name__} is not CREATE, DROP or REINDEX of an index")
        return None
    if change.kind == "drop" and statements.dropped_count(change) > 1:
        result.add("multiple-statements", "DROP INDEX CONCURRENTLY drops one index at a time; one change per index")
    if change.kind == "create" and not change.index:
        result.add("unnamed-index", "name the index: CREATE INDEX CONCURRENTLY <name> ON ...")
    if change.kind == "create" and change.if_exists:
        result.add("if-not-exists", "drop IF NOT EXISTS: pgsteady checks the existing index itself", "note")
    if not change.concurrent:
        result.add(f"non-concurrent-{change.kind}",
                   f"write {change.kind.upper()} INDEX CONCURRENTLY"
                   if change.kind != "reindex" else "write REINDEX INDEX CONCURRENTLY (PostgreSQL 12+)")
    return change


def _catalogue(st: IndexChange, conn: psycopg.Connection, q: Queries, result: LintResult) -> None:
    server = probes.server_facts(conn)
    result.server_version = server["version"]
    target = result.target = resolve(conn, q, st)
    if st.kind != "drop" and st.concurrent and concurrent_build_bug(server["version_num"]):
        result.add("concurrent-build-bug", f"this server runs PostgreSQL {server['version']}; "
                   "indexes built or rebuilt CONCURRENTLY on 14.0-14.3 can miss rows (fixed in 14.4)")
    if st.kind == "create":
        if target.table_oid is None:
            result.add("unknown-table", f"no table {st.table_name} (as the search_path resolves it)")
            return
        if target.table_relkind == "p" and st.concurrent:
            if not partitions.lint_findings(st, target, conn, result):
                return
        _overlaps(st, target, conn, result)
        facts = probes.table_facts(conn, target.table_oid)
        writes.hot_update_findings(conn, q, st, facts["schema"], facts["name"], result)
        return
    if not target.exists:
        what = st.index_name or st.table_name
        if st.if_exists:
            result.add("already-applied", f"{what} does not exist; DROP ... IF EXISTS will have nothing to do", "note")
        else:
            result.add("unknown-index" if st.index else "unknown-table", f"{what} does not exist")
        return
    if target.index_state.get("not_an_index"):
        result.add("not-an-index-change", f"{target.index_state['qualified']} is not an index")
        return
    if st.kind == "drop":
        from ..indexes.catalog import load_index

        index = load_index(conn, target.index_state["oid"])
        if index.relkind == "I" and not st.concurrent and not index.is_partition:
            # The only way PostgreSQL drops a partitioned index; the job runs it under the lock timeout.
            result.findings = [f for f in result.findings if f.rule != "non-concurrent-drop"]
            result.add("partitioned-drop", f"{index.qualified} is partitioned: DROP INDEX (not concurrently) drops "
                       "it with every partition's index, under an ACCESS EXCLUSIVE lock on each for a moment; "
                       "the job runs it under the lock timeout, with retries", "note")
            return
        if index.relkind == "I" and st.concurrent:
            result.add("partitioned-drop", f"{index.qualified} is a partitioned index: PostgreSQL cannot drop it "
                       "concurrently. DROP INDEX (without CONCURRENTLY) drops it with every partition's index under "
                       "an ACCESS EXCLUSIVE lock on each partition; write DROP INDEX IF EXISTS (pgsteady runs it under the lock timeout)")
            return
        if index.is_partition and st.concurrent:
            result.add("partitioned-drop", f"{index.qualified} is attached to a partitioned index and cannot be "
                       "dropped on its own; drop the partitioned index it belongs to instead")
            return
        if index.backs_constraint:
            result.add("constraint-index", f"{index.qualified} backs constraint {index.constraint_name}; "
                       "drop the constraint instead, in a quiet moment")


def _overlaps(st: IndexChange, target: Target, conn: psycopg.Connection, result: LintResult) -> None:
    state = target.index_state
    if state is not None and state.get("not_an_index"):
        result.add("name-taken", f"{state['qualified']} is a {state['relkind']!r} relation, not an index; rename the index")
        return
    try:
        overlaps = find_overlaps(conn, target.table, st.node)
    except Exception as exc:  # the proposal does not build even on an empty copy
        result.add("parse-error", str(exc).splitlines()[0])
        return
    ours = [o for o in overlaps if o.index == target.index]
    if state is not None and not state["is_valid"]:
        result.add("invalid-leftover", f"{target.index} exists but is INVALID: {state['indexdef']}", "note")
    elif state is not None:
        same = any(o.kind == "duplicate" for o in ours) and bool(state["is_unique"]) == st.unique
        if same and state["is_valid"]:
            result.add("already-applied", f"{target.index} exists, valid, with this definition", "note")
        elif not same:
            result.add("name-taken", f"{target.index} exists with another definition: {state['indexdef']}; "
                       "choose another name or drop it first")
    for o in overlaps:
        if o.index == target.index:
            continue
        if o.kind == "duplicate":
            result.add("duplicate-index", f"{o.index} is the same index: {o.indexdef}")
        elif o.kind == "covered":
            result.add("redundant-index", f"{o.index} already serves these lookups: {o.indexdef}")
        else:
            result.add("makes-redundant", f"{o.index} would become redundant: {o.indexdef}", "note")
