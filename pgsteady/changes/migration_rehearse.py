"""Rehearse a migration on a copy: every statement, in order, measured (``locks.measure``).

The tables the statements name are copied into a scratch schema (as the
index rehearsal does, ``rehearse.copy_table``), the session's search_path is
put in front of the real one so unqualified names find the copies and new
objects are created among them, and qualified names are re-aimed through the
parser. Before each statement runs, every relation it names must resolve
into the scratch schema or not exist yet; a statement that would reach
anything else (a view, a sequence, a type, the schema itself) is not run and
is recorded as not rehearsed, with the reason. The schema is dropped at the
end, also when a statement fails.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import psycopg
from pglast import ast
from pglast.enums import ObjectType
from pglast.stream import RawStream
from pglast.visitors import Visitor
from psycopg import sql

from ..queries import Queries
from ..indexes import probes
from . import cleanup, locks, measure, statements
from .files import ChangeFile
from .migration_lint import Statement, split
from .rehearse import copy_table
from .targets import row

_RUN = (ast.AlterTableStmt, ast.IndexStmt, ast.DropStmt, ast.RenameStmt, ast.CreateStmt, ast.CreateSeqStmt,
        ast.UpdateStmt, ast.DeleteStmt, ast.InsertStmt, ast.ReindexStmt, ast.VacuumStmt, ast.ClusterStmt,
        ast.TruncateStmt)
_DROPPABLE = (ObjectType.OBJECT_TABLE, ObjectType.OBJECT_INDEX, ObjectType.OBJECT_SEQUENCE)


class _Names(Visitor):
    def __init__(self) -> None:
        self.found: list[Any] = []

    def visit_RangeVar(self, ancestors, node):
        self.found.append(node)


def _range_vars(node: Any) -> list[Any]:
    names = _Names()
    names(node)
    return names.found


def _dropped(node: Any) -> list[tuple[str, ...]]:
    if isinstance(node, ast.DropStmt) and node.removeType in _DROPPABLE:
        return [tuple(p.sval for p in obj) for obj in node.objects]
    return []


def why_not(st: Statement) -> str | None:
    """Why a statement is not run on the copy, or None when it is."""
    node = st.node
    if isinstance(node, (ast.TransactionStmt, ast.VariableSetStmt)):
        return "each statement runs as its own step with pgsteady's own settings"
    if not isinstance(node, _RUN):
        return f"{type(node).__name__} acts on objects the copy shares with the database"
    if isinstance(node, ast.DropStmt) and node.removeType not in _DROPPABLE:
        return f"DROP {ObjectType(node.removeType).name[7:]} acts on objects the copy shares with the database"
    if isinstance(node, ast.RenameStmt) and node.relation is None:
        return f"renaming a {ObjectType(node.renameType).name[7:].lower()} acts on objects the copy shares with the database"
    if (isinstance(node, ast.VacuumStmt) and not node.rels) or \
            (isinstance(node, (ast.ClusterStmt, ast.ReindexStmt)) and node.relation is None):
        return "without a table it acts on every table of the database"
    return None


def tables_named(conn: psycopg.Connection, q: Queries, steps: list[Statement]) -> dict[int, dict[str, Any]]:
    """The ordinary tables the statements name (as the search_path resolves them now), by oid."""
    found: dict[int, dict[str, Any]] = {}
    for st in steps:
        if why_not(st):
            continue
        names = [statements._qualify(r.schemaname, r.relname) for r in _range_vars(st.node)]
        names += [".".join(statements.quote(p) for p in parts) for parts in _dropped(st.node)]
        for name in names:
            rel = probes.resolve_relation(conn, name)
            if rel is not None and rel["relkind"] == "r":
                found[rel["oid"]] = probes.table_facts(conn, rel["oid"])
    return found


def rehearse(change: ChangeFile, conn: psycopg.Connection, q: Queries, dsn: str) -> dict[str, Any]:
    """Figures of the rehearsal; ``conn`` must be in autocommit mode."""
    steps = split(change.ddl)
    scratch = f"pgsteady_rehearsal_{secrets.token_hex(4)}"
    started = time.monotonic()
    tables = tables_named(conn, q, steps)
    paths = row(conn, q.session_paths, {})
    home, search_path = paths["home"], paths["search_path"]
    figures: dict[str, Any] = {"schema": scratch, "sample": change.sample, "tables": [], "statements": [],
                               "queries": []}
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch)))
    try:
        cleanup.mark_schema(conn, q, scratch)  # a killed rehearsal's copy is found and dropped later
        for facts in tables.values():
            figures["tables"].append(copy_table(conn, q, facts, scratch, change.sample))
        copied = time.monotonic()
        moved = {(schema, f["name"]): scratch for f in tables.values() for schema in (None, f["schema"])}
        parsed = {query.name: statements.parse_query(query.sql) for query in change.queries}
        before = [measure.explain(conn, query, statements.rewrite_query(parsed[query.name], moved))
                  for query in change.queries]
        conn.execute(q.set_search_path, {"path": f"{scratch}, {search_path}"})
        schemas = {f["schema"] for f in tables.values()}
        for st in steps:
            result = _one(conn, q, dsn, st, scratch, schemas, home)
            figures["statements"].append(result)
            if result["status"] == "failed":
                break
        applied = time.monotonic()
        conn.execute(q.set_search_path, {"path": search_path})
        if not any(s["status"] == "failed" for s in figures["statements"]):
            after = [measure.explain(conn, query, statements.rewrite_query(parsed[query.name], moved))
                     for query in change.queries]
            figures["queries"] = [{"name": b["name"], "before": b, "after": a} for b, a in zip(before, after)]
    finally:
        conn.execute(q.set_search_path, {"path": search_path})
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(scratch)))
    figures["copied_rows"] = sum(t["rows"] for t in figures["tables"])
    figures["copied_bytes"] = sum(t["bytes"] for t in figures["tables"])
    figures["timings"] = {"copy": round(copied - started, 3), "apply": round(applied - copied, 3)}
    figures["seconds"] = round(time.monotonic() - started, 3)
    figures["build_seconds_estimate"] = round(sum(s.get("seconds", 0) for s in figures["statements"])
                                              / change.sample, 2)
    return figures


def _one(conn: psycopg.Connection, q: Queries, dsn: str, st: Statement, scratch: str, schemas: set[str],
         home: str) -> dict[str, Any]:
    base = {"index": st.index, "line": st.line, "statement": st.heading}
    reason = why_not(st)
    if reason:
        return {**base, "status": "not rehearsed", "why": reason}
    node = st.node
    for rv in _range_vars(node):
        # A copied table's schema, or a qualified name that does not exist yet (a new table,
        # sequence or index is created among the copies, never next to the real ones).
        if rv.schemaname in schemas or (rv.schemaname and rv.schemaname != scratch and probes.resolve_relation(
                conn, statements._qualify(rv.schemaname, rv.relname)) is None):
            rv.schemaname = scratch
    if isinstance(node, ast.DropStmt):
        node.objects = tuple(tuple([ast.String(sval=scratch), parts[-1]]) if len(parts) == 2 and
                             parts[0].sval in schemas else parts for parts in node.objects)
    outside = _outside(conn, q, node, scratch)
    if outside:
        return {**base, "status": "not rehearsed", "why": f"it names {outside}, which is not copied"}
    text = RawStream()(node)
    copies = probes.schema_tables(conn, scratch)
    try:
        figures = locks.measure(conn, dsn, q, text, transactional=st.transactional, table_oids=copies,
                                schemas={scratch: home})
    except psycopg.Error as exc:
        return {**base, "status": "failed", "error": str(exc).strip().splitlines()[0]}
    return {**base, "status": "done", **figures}


def _outside(conn: psycopg.Connection, q: Queries, node: Any, scratch: str) -> str | None:
    """The first relation the statement names that resolves outside the scratch schema."""
    names = [statements._qualify(r.schemaname, r.relname) for r in _range_vars(node)]
    names += [".".join(statements.quote(p) for p in parts) for parts in _dropped(node)]
    for name in names:
        rel = probes.resolve_relation(conn, name)
        if rel is not None and rel["schema"] != scratch:
            return rel["qualified"]
    return None
