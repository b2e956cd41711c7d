"""What a change is aimed at, found in the catalogue: the table, the index, their state.

Names are resolved the way SQL resolves them (``to_regclass``: the
search_path, quoting), once, and everything after works with oids.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ..database import scrub
from ..indexes.ddl import concurrently
from ..queries import Queries
from ..indexes import probes
from .statements import IndexChange, _qualify

@dataclass
class Target:
    table_oid: int | None
    table: str | None  # schema-qualified and quoted
    table_schema: str | None
    table_relkind: str | None
    index: str | None  # schema-qualified and quoted, where the index is (or will be)
    index_state: dict[str, Any] | None  # index_state row when the index exists

    @property
    def exists(self) -> bool:
        return self.index_state is not None


def row(conn: psycopg.Connection, query: str, params: dict) -> dict[str, Any] | None:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchone()


def rows(conn: psycopg.Connection, query: str, params: dict) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, params).fetchall()


def resolve(conn: psycopg.Connection, q: Queries, change: IndexChange) -> Target:
    """The table and index a change names; missing ones are None."""
    table = index = None
    if change.kind == "create":
        table = probes.resolve_relation(conn, change.table_name)
        if table is not None:
            # An index always lives in its table's schema.
            index_name = _qualify(table["schema"], change.index) if change.index else None
            index = probes.resolve_relation(conn, index_name) if index_name else None
    elif change.index is not None:
        index = probes.resolve_relation(conn, change.index_name)
    else:
        table = probes.resolve_relation(conn, change.table_name)
    state = None
    if index is not None and index["relkind"] in ("i", "I"):
        state = probes.index_state(conn, index["oid"])
        if table is None:
            table = probes.table_facts(conn, state["table_oid"])
    elif index is not None:
        state = {"not_an_index": True, "relkind": index["relkind"], "qualified": index["qualified"]}
    where = None
    if change.index is not None:
        schema = table["schema"] if table is not None else change.schema
        where = _qualify(schema, change.index)
    return Target(
        table_oid=table["oid"] if table else None, table=table["qualified"] if table else None,
        table_schema=table["schema"] if table else None, table_relkind=table["relkind"] if table else None,
        index=where, index_state=state,
    )


def derive_rollback(change: IndexChange, target: Target | None) -> str | None:
    """The way back, when it can be known: None for a REINDEX (nothing changes)."""
    if change.kind == "create" and change.index:
        name = target.index if target and target.index else change.index_name
        if target is not None and target.table_relkind == "p":
            return f"DROP INDEX IF EXISTS {name}"  # a partitioned index cannot be dropped concurrently
        return f"DROP INDEX CONCURRENTLY IF EXISTS {name}"
    if change.kind == "drop" and target is not None and target.exists and "indexdef" in target.index_state:
        return concurrently(target.index_state["indexdef"])
    return None


def jsonb(value: Any) -> Jsonb:
    """A value for a jsonb parameter; times and other non-JSON values are written as text."""
    return Jsonb(value, dumps=lambda v: json.dumps(v, default=str))


def one_line(exc: BaseException) -> str:
    """An error as one password-free line, for the record and the terminal."""
    text = scrub(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
