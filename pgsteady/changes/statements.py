"""The SQL of a change, read with PostgreSQL's own parser (pglast).

Two kinds of text come from a change file: the DDL (one CREATE, DROP or
REINDEX of an index) and the representative queries. Both are parsed, never
matched with regular expressions, so that ``CONCURRENTLY`` inside a comment
or a string cannot fool a rule.

Queries carry psycopg's named placeholders (``%(since)s``), which are not
SQL; they are swapped for ``$n`` parameters to parse and rewrite the query,
and swapped back afterwards.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, parse_sql
from pglast.keywords import RESERVED_KEYWORDS, TYPE_FUNC_NAME_KEYWORDS
from pglast.enums import ObjectType, ReindexObjectType
from pglast.parser import ParseError
from pglast.stream import RawStream
from pglast.visitors import Visitor
from psycopg import sql

from ..errors import PgsteadyError
from ..security.settings import CHANGE_QUERY_DENIED_FUNCTIONS, CHANGE_QUERY_DENIED_PREFIXES


class StatementError(PgsteadyError):
    """SQL in a change file that does not parse, or is not what the field wants."""


_PLACEHOLDER = re.compile(r"%\((\w+)\)s")
_PARAM = re.compile(r"\$(\d+)")
_PLAIN = re.compile(r"^[a-z_][a-z0-9_$]*$")


@dataclass
class IndexChange:
    """What one DDL statement does to one index.

    ``kind`` is create, drop or reindex; ``schema`` is None when the name is
    left to the search_path. For a REINDEX TABLE ``index`` is None and
    ``table`` names the table.
    """

    kind: str
    text: str
    concurrent: bool
    index: str | None = None
    schema: str | None = None
    table: str | None = None
    table_schema: str | None = None
    unique: bool = False
    if_exists: bool = False
    node: Any = field(default=None, repr=False)

    @property
    def index_name(self) -> str | None:
        """The index as SQL would name it: schema.index when qualified."""
        if self.index is None:
            return None
        return _qualify(self.schema, self.index)

    @property
    def table_name(self) -> str | None:
        return _qualify(self.table_schema, self.table) if self.table else None


def _qualify(schema: str | None, name: str) -> str:
    parts = (schema, name) if schema else (name,)
    return ".".join(quote(p) for p in parts)


def quote(name: str) -> str:
    """An identifier as quote_ident() writes it: quoted only when it must be."""
    if _PLAIN.match(name) and name not in RESERVED_KEYWORDS and name not in TYPE_FUNC_NAME_KEYWORDS:
        return name
    return sql.Identifier(name).as_string(None)


def parse(text: str) -> list[Any]:
    """Every statement in ``text`` as a pglast node."""
    try:
        return [raw.stmt for raw in parse_sql(text)]
    except ParseError as exc:
        raise StatementError(f"the SQL does not parse: {exc}") from None


def describe(node: Any, text: str) -> IndexChange | None:
    """The index change a statement makes, None when it is not one."""
    if isinstance(node, ast.IndexStmt):
        rel = node.relation
        return IndexChange("create", text, bool(node.concurrent), index=node.idxname, schema=rel.schemaname,
                           table=rel.relname, table_schema=rel.schemaname, unique=bool(node.unique),
                           if_exists=bool(node.if_not_exists), node=node)
    if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_INDEX:
        names = [tuple(part.sval for part in obj) for obj in node.objects]
        first = names[0]
        return IndexChange("drop", text, bool(node.concurrent), index=first[-1],
                           schema=first[-2] if len(first) > 1 else None, if_exists=bool(node.missing_ok),
                           node=node)
    if isinstance(node, ast.ReindexStmt) and node.relation is not None:
        concurrent = any(p.defname == "concurrently" and _true(p.arg) for p in node.params or ())
        rel = node.relation
        if node.kind == ReindexObjectType.REINDEX_OBJECT_INDEX:
            return IndexChange("reindex", text, concurrent, index=rel.relname, schema=rel.schemaname, node=node)
        if node.kind == ReindexObjectType.REINDEX_OBJECT_TABLE:
            return IndexChange("reindex", text, concurrent, table=rel.relname, table_schema=rel.schemaname,
                               node=node)
    return None


def _true(arg: Any) -> bool:
    """A DefElem's value as a boolean: absent means true (``REINDEX (CONCURRENTLY) ...``)."""
    if arg is None:
        return True
    if isinstance(arg, ast.Integer):
        return bool(arg.ival)
    return str(getattr(arg, "sval", arg)).lower() not in ("false", "off", "0", "no")


def dropped_count(change: IndexChange) -> int:
    return len(change.node.objects) if change.kind == "drop" else 1


def without_concurrently(change: IndexChange) -> str:
    """The same CREATE INDEX, plain: what HypoPG and a rehearsal copy accept."""
    node = change.node
    saved = node.concurrent
    node.concurrent = False
    try:
        return RawStream()(node)
    finally:
        node.concurrent = saved


def on_schema(change: IndexChange, schema: str, *, concurrent: bool = False) -> str:
    """The statement re-aimed at the same names in another schema (the rehearsal copy)."""
    node = change.node
    if isinstance(node, ast.IndexStmt):
        saved = (node.relation.schemaname, node.concurrent)
        node.relation.schemaname, node.concurrent = schema, concurrent
        try:
            return RawStream()(node)
        finally:
            node.relation.schemaname, node.concurrent = saved
    if change.kind == "drop":
        return f"DROP INDEX {'IF EXISTS ' if change.if_exists else ''}{_qualify(schema, change.index)}"
    target = _qualify(schema, change.index or change.table)
    return f"REINDEX {'INDEX' if change.index else 'TABLE'} {target}"


def reschema_indexdef(indexdef: str, schema: str) -> str:
    """An existing index's pg_get_indexdef, to be built under the same name in ``schema``."""
    node = parse(indexdef)[0]
    node.relation.schemaname = schema
    return RawStream()(node)


# -- queries ----------------------------------------------------------------


@dataclass
class ParsedQuery:
    node: Any
    params: list[str]  # placeholder names, in $n order
    relations: list[tuple[str | None, str]]  # (schema, name) of every table it reads, CTEs left out


def parse_query(text: str) -> ParsedQuery:
    """A representative query: exactly one SELECT, without writes anywhere in it."""
    names: list[str] = []

    def number(m: re.Match) -> str:
        if m.group(1) not in names:
            names.append(m.group(1))
        return f"${names.index(m.group(1)) + 1}"

    nodes = parse(_PLACEHOLDER.sub(number, text).replace("%%", "%"))
    if len(nodes) != 1:
        raise StatementError(f"a query must be one statement, found {len(nodes)}")
    node = nodes[0]
    finder = _Relations()
    finder(node)
    if not isinstance(node, ast.SelectStmt) or finder.writes:
        raise StatementError("a query must be a SELECT without INSERT/UPDATE/DELETE: "
                             "it is run under EXPLAIN ANALYZE, which executes it")
    if finder.refused:
        raise StatementError(f"a query must be a plain SELECT: {finder.refused[0]} is not allowed "
                             "(it is run under EXPLAIN ANALYZE, which executes it)")
    rels = [r for r in dict.fromkeys(finder.relations) if not (r[0] is None and r[1] in finder.ctes)]
    return ParsedQuery(node, names, rels)


def rewrite_query(parsed: ParsedQuery, tables: dict[tuple[str | None, str], str]) -> str:
    """The query reading ``tables`` ({(schema, name): new schema}) from their copies.

    The result uses psycopg placeholders again, ready to execute.
    """
    moved = _Move(tables)
    moved(parsed.node)
    try:
        text = RawStream()(parsed.node)
    finally:
        moved.undo()
    text = text.replace("%", "%%")
    return _PARAM.sub(lambda m: f"%({parsed.params[int(m.group(1)) - 1]})s", text)


# Functions a representative query may not call: they act outside the query's
# read-only transaction (signal or end backends, open other connections, run
# SQL text of their own, read server files, take locks, change settings).
# The lists live in security/settings.py. Anything else the role may execute,
# a volatile function of the application included, still runs: docs/changes.md
# says so.
DENIED_FUNCTIONS = CHANGE_QUERY_DENIED_FUNCTIONS
DENIED_PREFIXES = CHANGE_QUERY_DENIED_PREFIXES


def denied_function(name: str) -> bool:
    name = name.lower()
    return name in DENIED_FUNCTIONS or name.startswith(DENIED_PREFIXES)


class _Relations(Visitor):
    def __init__(self) -> None:
        self.relations: list[tuple[str | None, str]] = []
        self.ctes: set[str] = set()
        self.writes = False
        self.refused: list[str] = []

    def visit_SelectStmt(self, ancestors, node):
        if node.intoClause is not None:
            self.refused.append("SELECT ... INTO (it creates a table)")
        if node.lockingClause:
            self.refused.append("a locking clause (FOR UPDATE/SHARE takes row locks)")

    def visit_FuncCall(self, ancestors, node):
        name = node.funcname[-1].sval if node.funcname else ""
        if denied_function(name):
            self.refused.append(f"calling {name}()")

    def visit_RangeVar(self, ancestors, node):
        self.relations.append((node.schemaname, node.relname))

    def visit_CommonTableExpr(self, ancestors, node):
        self.ctes.add(node.ctename)

    def visit_InsertStmt(self, ancestors, node):
        self.writes = True

    visit_UpdateStmt = visit_DeleteStmt = visit_MergeStmt = visit_InsertStmt


class _Move(Visitor):
    def __init__(self, tables: dict[tuple[str | None, str], str]) -> None:
        self.tables = tables
        self.changed: list[tuple[Any, str | None]] = []

    def visit_RangeVar(self, ancestors, node):
        target = self.tables.get((node.schemaname, node.relname))
        if target is not None:
            self.changed.append((node, node.schemaname))
            node.schemaname = target

    def undo(self) -> None:
        for node, schema in self.changed:
            node.schemaname = schema
