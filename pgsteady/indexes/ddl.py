"""The SQL text of fixes and undos: concurrent, one statement each.

Every statement here is safe on a busy table: CREATE / DROP / REINDEX
INDEX CONCURRENTLY take a SHARE UPDATE EXCLUSIVE lock, which lets reads and
writes go on. Names always go through ``psycopg.sql.Identifier``; existing
definitions come from ``pg_get_indexdef``, which quotes what it prints.
"""

from __future__ import annotations

from typing import Any, Sequence

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream
from psycopg import sql

from ..errors import ConfigError
from .catalog import Index

# The methods a fix may propose; a fixed list, so the name needs no quoting.
METHODS = frozenset({"btree", "hash", "gin", "gist", "brin"})


def ident(*names: str) -> str:
    return sql.Identifier(*names).as_string(None)


def drop(index: Index) -> str:
    return f"DROP INDEX CONCURRENTLY {ident(index.schema, index.name)};"


def drop_named(schema: str, name: str) -> str:
    return f"DROP INDEX CONCURRENTLY {ident(schema, name)};"


def index_statement(text: str) -> Any:
    """One CREATE INDEX statement, read with PostgreSQL's parser (pglast): its IndexStmt node.

    The one parser of index DDL for both pillars: the checks' proposals
    (``find_overlaps``), the change workflow and the rewrites below.
    """
    try:
        nodes = [raw.stmt for raw in parse_sql(text)]
    except ParseError as exc:
        raise ConfigError(f"the index statement does not parse: {exc}") from None
    if len(nodes) != 1 or not isinstance(nodes[0], ast.IndexStmt):
        raise ConfigError(f"expected one CREATE INDEX statement, found {len(nodes)} statement(s)"
                          + (f" ({type(nodes[0]).__name__})" if nodes else ""))
    return nodes[0]


def deparse(node: Any, **changes: Any) -> str:
    """``node`` as SQL text, with some of its fields changed for the occasion (restored after)."""
    saved = {name: getattr(node, name) for name in changes}
    try:
        for name, value in changes.items():
            setattr(node, name, value)
        return RawStream()(node)
    finally:
        for name, value in saved.items():
            setattr(node, name, value)


def concurrently(indexdef: str) -> str:
    """An index definition (pg_get_indexdef) as the CREATE INDEX CONCURRENTLY that rebuilds it:
    the one rewrite to CONCURRENTLY, through the parser."""
    return deparse(index_statement(indexdef), concurrent=True)


def on_partition(indexdef: str, schema: str, table: str, name: str) -> str:
    """A partitioned index's definition as the CREATE INDEX CONCURRENTLY of its index on one partition."""
    node = index_statement(indexdef)
    partition = ast.RangeVar(schemaname=schema, relname=table, inh=True, relpersistence="p")
    return deparse(node, relation=partition, idxname=name, concurrent=True, if_not_exists=False) + ";"


def attach(parent_schema: str, parent: str, schema: str, name: str) -> str:
    """Attach a partition's index to the partitioned index (instant; the parent turns valid with the last one)."""
    return f"ALTER INDEX {ident(parent_schema, parent)} ATTACH PARTITION {ident(schema, name)};"


def recreate(index: Index) -> str:
    """The CREATE INDEX CONCURRENTLY that rebuilds ``index`` as it is defined now."""
    return concurrently(index.indexdef) + ";"


def recreate_as(index: Index, new_name: str, *, where: str | None = None) -> str:
    """``index``'s definition under a new name, built concurrently, optionally with a WHERE clause added.

    Only called for indexes without a predicate, so the WHERE is the only one;
    ``where`` is SQL this module wrote (quoted identifiers), never user text.
    """
    node = index_statement(index.indexdef)
    changes: dict[str, Any] = {"idxname": new_name, "concurrent": True}
    if where:
        changes["whereClause"] = parse_sql(f"SELECT WHERE {where}")[0].stmt.whereClause
    return deparse(node, **changes) + ";"


def create(
    name: str,
    table_qualified: str,
    columns: Sequence[str],
    *,
    method: str = "btree",
    where: str | None = None,
) -> str:
    """A new plain index on table columns; ``table_qualified`` is already quoted by the catalogue.

    The index name cannot be schema-qualified: an index always lives in its table's schema.
    """
    if method not in METHODS:
        raise ValueError(f"unknown index method {method!r}")
    cols = ", ".join(ident(c) for c in columns)
    where_sql = f" WHERE {where}" if where else ""
    return (
        f"CREATE INDEX CONCURRENTLY {ident(name)} ON {table_qualified} "
        f"USING {method} ({cols}){where_sql};"
    )


def reindex(index: Index) -> str:
    return f"REINDEX INDEX CONCURRENTLY {ident(index.schema, index.name)};"


def replace(index: Index, new_statement: str, new_name: str) -> tuple[list[str], list[str]]:
    """Fix and undo for swapping ``index`` for a better one: build first, then drop.

    Building the new index before dropping the old keeps queries served the
    whole time; the undo does the same in reverse.
    """
    fix = [new_statement, drop(index)]
    undo = [recreate(index), drop_named(index.schema, new_name)]
    return fix, undo
