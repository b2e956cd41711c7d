"""Probes of one object, for the change workflow: one typed function per query.

The health checks read the catalogue once, in bulk (``catalog.load``); the
change workflow asks about one relation, one backend or one build at a time.
Both are the one catalogue reader of the package: their SQL is in
``indexes/sql`` (the probes in ``probes.sql``), and ``pgsteady/changes`` never
reads ``pg_catalog`` or the statistics views itself
(``tests/changes/test_layering.py`` checks it). To change what a probe
reads, change its query and its row type here, together.

Rows are returned as typed dicts: the callers keep them in the step records
and logs as JSON, as they are.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypedDict

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from .queries import QUERIES


def _one(conn: psycopg.Connection, name: str, params: dict[str, Any]) -> Any:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(QUERIES[name], params).fetchone()


def _all(conn: psycopg.Connection, name: str, params: dict[str, Any], query: Any = None) -> Any:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query or QUERIES[name], params).fetchall()


# -- the server and one relation ------------------------------------------------------------


class ServerFacts(TypedDict):
    version_num: int
    version: str
    database: str
    pid: int


class Relation(TypedDict):
    oid: int
    relkind: str
    schema: str
    name: str
    qualified: str  # schema.name, quoted where needed


class IndexState(TypedDict):
    oid: int
    table_oid: int
    is_valid: bool
    is_ready: bool
    is_unique: bool
    schema: str
    name: str
    qualified: str
    indexdef: str
    bytes: int


class TableFacts(Relation):
    heap_bytes: int
    total_bytes: int
    index_bytes: int
    estimated_rows: int
    live_rows: int | None
    last_analyzed: datetime | None


class TableIndex(TypedDict):
    name: str
    indexdef: str
    bytes: int
    is_valid: bool
    is_unique: bool
    idx_scan: int | None


def server_facts(conn: psycopg.Connection) -> ServerFacts:
    return _one(conn, "server_facts", {})


def resolve_relation(conn: psycopg.Connection, name: str) -> Relation | None:
    """The relation ``name`` means as SQL would resolve it (search_path, quoting), or None."""
    return _one(conn, "resolve_relation", {"name": name})


def index_state(conn: psycopg.Connection, oid: int) -> IndexState | None:
    return _one(conn, "index_state", {"oid": oid})


def table_facts(conn: psycopg.Connection, oid: int) -> TableFacts | None:
    return _one(conn, "table_facts", {"oid": oid})


def table_indexes(conn: psycopg.Connection, oid: int) -> list[TableIndex]:
    return _all(conn, "table_indexes", {"oid": oid})


def key_width(conn: psycopg.Connection, schema: str, table: str, columns: list[str]) -> int:
    """The summed average width (pg_stats) of these columns of a table."""
    return _one(conn, "key_widths", {"schema": schema, "table": table, "columns": columns})["width"]


def relation_size(conn: psycopg.Connection, oid: int) -> int:
    return _one(conn, "relation_size", {"oid": oid})["bytes"]


# -- a table's columns, constraints and files (migration lint and its rehearsal) ------------


class ColumnType(TypedDict):
    typname: str
    atttypmod: int
    shown: str  # format_type: what \d would show


class RelationFile(TypedDict):
    oid: int
    relname: str  # schema.name
    relkind: str
    filenode: int


class Lock(TypedDict):
    relation: str  # schema.name, or the oid when the relation is not visible
    relname: str | None
    schema: str | None
    mode: str
    granted: bool


def column_type(conn: psycopg.Connection, table: str, column: str) -> ColumnType | None:
    return _one(conn, "column_type", {"table": table, "column": column})


def relation_bytes(conn: psycopg.Connection, table: str) -> int | None:
    """pg_total_relation_size of the table ``table`` names, None when there is none."""
    found = _one(conn, "relation_bytes", {"table": table})
    return found["bytes"] if found else None


def function_volatility(conn: psycopg.Connection, names: list[str]) -> dict[str, str]:
    """Function name -> the volatility of its most volatile overload ('v', 's' or 'i')."""
    return {r["proname"]: r["volatility"] for r in _all(conn, "function_volatility", {"names": names})}


def not_null_proven(conn: psycopg.Connection, table: str, column: str) -> bool:
    return bool(_one(conn, "not_null_proven", {"table": table, "column": column})["proven"])


def column_checks(conn: psycopg.Connection, table: str, column: str) -> int:
    """How many CHECK constraints read the column."""
    return _one(conn, "column_checks", {"table": table, "column": column})["checks"]


def relation_files(conn: psycopg.Connection, oid: int) -> list[RelationFile]:
    """The files behind a table, its TOAST table and its indexes."""
    return _all(conn, "relation_files", {"oid": oid})


def schema_tables(conn: psycopg.Connection, schema: str) -> list[int]:
    return [r["oid"] for r in _all(conn, "schema_tables", {"schema": schema})]


def locks_of_backend(conn: psycopg.Connection, pid: int) -> list[Lock]:
    return _all(conn, "locks_of_backend", {"pid": pid})


# -- backends: who runs, who waits for whom, who holds a table -------------------------------


class Backend(TypedDict):
    pid: int
    state: str | None
    wait_event_type: str | None
    wait_event: str | None
    query: str | None
    backend_start: datetime | None  # hidden from other roles' sessions
    xact_start: datetime | None


class Blocker(TypedDict):
    pid: int
    role: str | None
    application_name: str | None
    state: str | None
    query: str | None
    xact_seconds: float | None


def backends(conn: psycopg.Connection, pids: list[int]) -> list[Backend]:
    """The backends among ``pids`` that are alive, with what they are doing."""
    return _all(conn, "backends", {"pids": pids})


def backend(conn: psycopg.Connection, pid: int) -> Backend | None:
    found = backends(conn, [pid])
    return found[0] if found else None


def backend_self(conn: psycopg.Connection) -> tuple[int, datetime]:
    """This session's backend as the server knows it (behind a pooler, not the pid libpq announced)."""
    found = _one(conn, "backend_self", {})
    return found["pid"], found["backend_start"]


def blockers(conn: psycopg.Connection, pid: int) -> list[Blocker]:
    """Who backend ``pid`` waits for, with what they are running."""
    return _all(conn, "blockers", {"pid": pid})


def table_lockers(conn: psycopg.Connection, table_oid: int) -> list[Blocker]:
    """Sessions holding a lock on the table that a concurrent index build has to wait for."""
    return _all(conn, "table_lockers", {"table_oid": table_oid})


# -- builds in progress ----------------------------------------------------------------------


class IndexBuild(TypedDict):
    pid: int
    table_oid: int | None  # None: another role's build, whose details are hidden
    index_oid: int | None
    table_name: str | None
    index_name: str | None
    command: str
    phase: str
    lockers_total: int
    lockers_done: int
    current_locker_pid: int
    blocks_total: int
    blocks_done: int
    tuples_total: int
    tuples_done: int
    partitions_total: int
    partitions_done: int
    wait_event_type: str | None
    wait_event: str | None
    query_start: datetime | None
    locked: list[int] | None  # the relations the backend holds locks on


def index_builds(conn: psycopg.Connection) -> list[IndexBuild]:
    """Every CREATE INDEX / REINDEX running in this database."""
    return _all(conn, "index_builds", {"pid": None})


def index_build(conn: psycopg.Connection, pid: int) -> IndexBuild | None:
    """The build backend ``pid`` runs, if it runs one."""
    found = _all(conn, "index_builds", {"pid": pid})
    return found[0] if found else None


# -- extensions ------------------------------------------------------------------------------


class Extension(TypedDict):
    available: bool  # CREATE EXTENSION would find it
    schema: str | None  # where it is installed; None when it is not


class Statement(TypedDict):
    queryid: int
    calls: int
    total_exec_time: float
    query: str


def extension(conn: psycopg.Connection, name: str) -> Extension:
    return _one(conn, "extension", {"name": name})


def statements_schema(conn: psycopg.Connection) -> str | None:
    """The schema pg_stat_statements is installed in, None when it is not (the one way every part asks)."""
    return extension(conn, "pg_stat_statements")["schema"]


def statements_naming(conn: psycopg.Connection, table: str, *, writes: bool = False,
                      limit: int | None = None) -> list[Statement] | None:
    """This database's statements whose text names ``table`` (only those that write, with
    ``writes``), most called first; None when pg_stat_statements is missing or cannot be read."""
    schema = statements_schema(conn)
    if schema is None:
        return None
    query = sql.SQL(QUERIES["statements_naming"]).format(pgss=sql.Identifier(schema))
    try:
        with conn.transaction():
            return _all(conn, "statements_naming", {"pattern": f"%{table}%", "writes": writes, "limit": limit},
                        query)
    except psycopg.Error:  # installed but not preloaded, or not readable by this role
        return None


class Hypothetical(TypedDict):
    indexrelid: int
    indexname: str


def hypopg_create(conn: psycopg.Connection, ddl: str) -> Hypothetical:
    """A hypothetical index (HypoPG): in this backend's memory only, seen by EXPLAIN."""
    return _one(conn, "hypopg_create", {"ddl": ddl})


def hypopg_size(conn: psycopg.Connection, oid: int) -> int:
    return _one(conn, "hypopg_size", {"oid": oid})["bytes"]


# -- what writing to a table costs; the rehearsals' scratch schemas --------------------------


class WriteCounters(TypedDict):
    at: datetime
    inserted: int
    updated: int
    hot_updated: int
    deleted: int
    index_bytes: int
    table_bytes: int
    wal_position: int | None  # None on a standby


class ScratchSchema(TypedDict):
    schema: str
    owner: str | None  # the schema's comment: JSON naming the backend that made it


def write_counters(conn: psycopg.Connection, oid: int, *, partitioned: bool = False) -> WriteCounters:
    """Cumulative write counters of a table (summed over its partitions when ``partitioned``)."""
    return _one(conn, "partition_write_counters" if partitioned else "write_counters", {"oid": oid})


def rehearsal_schemas(conn: psycopg.Connection) -> list[ScratchSchema]:
    return _all(conn, "rehearsal_schemas", {})
