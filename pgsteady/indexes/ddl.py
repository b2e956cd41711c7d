"""The SQL text of fixes and undos: concurrent, one statement each.

Every statement here is safe on a busy table: CREATE / DROP / REINDEX
INDEX CONCURRENTLY take a SHARE UPDATE EXCLUSIVE lock, which lets reads and
writes go on. Names always go through ``psycopg.sql.Identifier``; existing
definitions come from ``pg_get_indexdef``, which quotes what it prints.
"""

from __future__ import annotations

import re
from typing import Sequence

from psycopg import sql

from .catalog import Index

# pg_get_indexdef always starts this way; the rest is "ON [ONLY] table USING ...".
_DEF_HEAD = re.compile(r"^CREATE (UNIQUE )?INDEX ")


# The methods a fix may propose; a fixed list, so the name needs no quoting.
METHODS = frozenset({"btree", "hash", "gin", "gist", "brin"})


def ident(*names: str) -> str:
    return sql.Identifier(*names).as_string(None)


def drop(index: Index) -> str:
    return f"DROP INDEX CONCURRENTLY {ident(index.schema, index.name)};"


def drop_named(schema: str, name: str) -> str:
    return f"DROP INDEX CONCURRENTLY {ident(schema, name)};"


def recreate(index: Index) -> str:
    """The CREATE INDEX CONCURRENTLY that rebuilds ``index`` as it is defined now.

    CONCURRENTLY goes right after INDEX, so CREATE UNIQUE INDEX stays unique.
    """
    head = _DEF_HEAD.match(index.indexdef)
    if head is None:  # pragma: no cover - pg_get_indexdef has printed this prefix since 8.x
        raise ValueError(f"unexpected index definition: {index.indexdef}")
    return f"CREATE {head.group(1) or ''}INDEX CONCURRENTLY {index.indexdef[head.end():]};"


def _body(index: Index) -> str:
    """Everything after the index name: "ON schema.table USING method (...) ..."."""
    head = _DEF_HEAD.match(index.indexdef)
    prefix = head.group(0) + index.quoted_name + " "
    if not index.indexdef.startswith(prefix):  # pragma: no cover - see recreate()
        raise ValueError(f"unexpected index definition: {index.indexdef}")
    return index.indexdef[len(prefix):]


def recreate_as(index: Index, new_name: str, *, where: str | None = None) -> str:
    """``index``'s definition under a new name, optionally with a WHERE clause added.

    Only called for indexes without a predicate, so the WHERE is the only one.
    """
    unique = "UNIQUE " if index.is_unique else ""
    where_sql = f" WHERE {where}" if where else ""
    return f"CREATE {unique}INDEX CONCURRENTLY {ident(new_name)} {_body(index)}{where_sql};"


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
