"""One read of the catalogue, shared by every check.

This module and ``probes`` (one object at a time, for the change workflow)
are the package's one reader of the catalogue; their queries are in
``indexes/sql``. ``load()`` runs a few set-based queries (indexes, foreign keys, builds in
progress, server facts) and hands the checks a :class:`Snapshot`. Checks
never query per index; what they need beyond the snapshot (planner
statistics for chosen columns, free names for new indexes) they ask the
snapshot for in bulk.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import cached_property
from datetime import datetime
from typing import Any, Iterable

import psycopg
from psycopg.rows import dict_row

from ..errors import ConfigError
from . import probes
from .queries import QUERIES
from .report import Thresholds


@dataclass(eq=False)
class Index:
    """An index as the checks see it; field names are the columns of the `indexes` query."""

    oid: int
    table_oid: int
    schema: str
    table: str
    name: str
    quoted_name: str
    qualified: str
    table_qualified: str
    relkind: str
    table_relkind: str
    method: str
    is_unique: bool
    is_primary: bool
    is_valid: bool
    is_ready: bool
    is_live: bool
    key_count: int
    attnums: list[int]
    elements: list[str]
    opclasses: list[int]
    collations: list[int]
    options: list[int]
    index_attnames: list[str]
    predicate: str | None
    indexdef: str
    constraint_type: str | None
    constraint_name: str | None
    is_partition: bool
    bytes: int
    reltuples: float
    fillfactor: int | None
    idx_scan: int | None
    can_read_stats: bool
    # Per index column, from the table's columns: the name (None for an
    # expression) and the type category ('A' array, 'B' boolean, '' for an expression).
    columns: list[str | None] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    not_null: list[bool] = field(default_factory=list)

    # Cached: duplicate and redundancy checks compare these many times.
    @cached_property
    def keys(self) -> tuple[tuple[str, int, int, int], ...]:
        """Key columns with what makes two of them interchangeable: text, opclass, collation, order."""
        return tuple(
            (self.elements[k], self.opclasses[k], self.collations[k], self.options[k])
            for k in range(self.key_count)
        )

    @cached_property
    def include(self) -> tuple[str, ...]:
        return tuple(self.elements[self.key_count:])

    @property
    def shape(self) -> tuple:
        """Everything two exact duplicates share (uniqueness aside)."""
        return (self.table_oid, self.method, self.keys, self.include, self.predicate)

    @property
    def backs_constraint(self) -> bool:
        return self.constraint_type is not None

    @property
    def can_drop_concurrently(self) -> bool:
        """DROP INDEX CONCURRENTLY works: a plain index, not a constraint's, not a partition's."""
        return self.relkind == "i" and not self.backs_constraint and not self.is_partition

    @property
    def key_elements(self) -> list[str]:
        return self.elements[: self.key_count]


@dataclass(eq=False)
class ForeignKey:
    name: str
    table_oid: int
    schema: str
    table: str
    table_relkind: str
    table_qualified: str
    referenced: str
    attnums: list[int]
    columns: list[str]
    table_bytes: int
    table_rows: float


@dataclass
class Snapshot:
    conn: psycopg.Connection
    thresholds: Thresholds
    schema: str | None
    table_oid: int | None
    server: dict[str, Any]
    indexes: list[Index]
    foreign_keys: list[ForeignKey]
    builds: list[probes.IndexBuild]
    also: tuple[str, ...] = ()  # replica DSNs whose index scans count too
    own_schemas: frozenset[str] = frozenset()  # schemas of pgsteady installs
    skipped: list[tuple[str, str]] = field(default_factory=list)
    _names_taken: dict[str, set[str]] = field(default_factory=dict)
    _by_table: dict[int, list[Index]] | None = None

    def by_table(self) -> dict[int, list[Index]]:
        if self._by_table is None:
            self._by_table = defaultdict(list)
            for index in self.indexes:
                self._by_table[index.table_oid].append(index)
        return self._by_table

    def query(self, name: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(QUERIES[name], params or {})
            return cur.fetchall()

    def column_stats(
        self, wanted: Iterable[tuple[str, str, str, bool]]
    ) -> dict[tuple[str, str, str], dict[str, Any]]:
        """pg_stats rows for (schema, table, column, want_most_common_vals), in one query."""
        wanted = list(dict.fromkeys(wanted))
        if not wanted:
            return {}
        schemas, tables, columns, mcv = (list(part) for part in zip(*wanted))
        rows = self.query(
            "column_stats", {"schemas": schemas, "tables": tables, "columns": columns, "want_mcv": mcv}
        )
        return {(r["schema"], r["table"], r["column"]): r for r in rows}

    def stats_window(self) -> dict[str, Any]:
        """Since when the activity counters have been counting: part of any usage evidence."""
        reset: datetime | None = self.server["stats_reset"]
        if reset is None:
            return {"stats_reset": None, "stats_age_seconds": None,
                    "stats_age": "never reset (counting since the database was created or the server last crashed)"}
        seconds = int((self.server["now"] - reset).total_seconds())
        return {"stats_reset": reset.isoformat(), "stats_age_seconds": seconds, "stats_age": human_age(seconds)}

    def free_name(self, schema: str, base: str) -> str:
        """A relation name not yet used in ``schema`` (nor handed out earlier in this run)."""
        if schema not in self._names_taken:
            self._names_taken[schema] = {r["name"] for r in self.query("relation_names", {"schema": schema})}
        taken = self._names_taken[schema]
        for n in range(100):
            name = truncate_name(base, str(n) if n else "")
            if name not in taken:
                taken.add(name)
                return name
        raise ConfigError(f"cannot find a free index name like {base!r} in schema {schema!r}")


# PostgreSQL truncates identifiers to NAMEDATALEN - 1 bytes.
MAX_NAME_BYTES = 63


def truncate_name(base: str, suffix: str = "") -> str:
    """``base`` + ``suffix`` in at most 63 bytes, cutting ``base`` (never a UTF-8 character in half)."""
    room = MAX_NAME_BYTES - len(suffix.encode())
    cut = base.encode()[:room].decode(errors="ignore")
    return cut + suffix


def human_age(seconds: int) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds"


def human_bytes(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"  # pragma: no cover


def resolve_scope(conn: psycopg.Connection, schema: str | None, table: str | None) -> int | None:
    """Check --schema and --table against the database; the table's oid, or None."""
    with conn.cursor(row_factory=dict_row) as cur:
        if schema is not None:
            cur.execute(QUERIES["schema_exists"], {"schema": schema})
            if not cur.fetchone()["found"]:
                raise ConfigError(f"schema {schema!r} does not exist; check --schema (names are case-sensitive)")
        if table is None:
            return None
        name = table
        if schema is not None and "." not in table:
            name = psycopg.sql.Identifier(schema).as_string(conn) + "." + table
        row = probes.resolve_relation(conn, name)
    if row is None or row["relkind"] not in ("r", "p", "m"):
        where = f" in schema {schema!r}" if schema else " on the search_path"
        raise ConfigError(f"no table {table!r}{where}; check --table (use schema.table to be explicit)")
    return row["oid"]


def load(
    conn: psycopg.Connection,
    *,
    schema: str | None,
    table_oid: int | None,
    thresholds: Thresholds,
    also: tuple[str, ...] = (),
) -> Snapshot:
    scope = {"schema": schema, "table_oid": table_oid}
    snap = Snapshot(conn, thresholds, schema, table_oid, server={}, indexes=[], foreign_keys=[], builds=[],
                    also=also)
    snap.server = snap.query("server")[0]
    snap.indexes = [Index(**row) for row in snap.query("indexes", {**scope, "index_oid": None})]
    _add_columns(conn, snap.indexes)
    snap.foreign_keys = [ForeignKey(**row) for row in snap.query("foreign_keys", scope)]
    snap.builds = probes.index_builds(conn)
    snap.own_schemas = frozenset(r["schema"] for r in snap.query("own_schemas"))
    return snap


def load_indexes(conn: psycopg.Connection, *, table_oid: int | None = None, oid: int | None = None) -> list[Index]:
    """Indexes of one table, or one index by oid, described exactly as ``load`` describes them.

    With ``oid`` the index may be in any schema, even pg_temp.
    """
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(QUERIES["indexes"], {"schema": None, "table_oid": table_oid, "index_oid": oid})
        indexes = [Index(**row) for row in cur.fetchall()]
    _add_columns(conn, indexes)
    return indexes


def partitions_of(conn: psycopg.Connection, table_oid: int, *, unattached_to: int | None = None) -> list[dict[str, Any]]:
    """The partitions of a partitioned table (oid, schema, name, qualified, relkind), by name; with
    ``unattached_to`` (a partitioned index), only those with no index attached to it."""
    with conn.cursor(row_factory=dict_row) as cur:
        if unattached_to is None:
            cur.execute(QUERIES["partitions"], {"table_oid": table_oid})
        else:
            cur.execute(QUERIES["unattached_partitions"], {"index_oid": unattached_to})
        return cur.fetchall()


def load_index(conn: psycopg.Connection, oid: int) -> Index:
    return load_indexes(conn, oid=oid)[0]


def _add_columns(conn: psycopg.Connection, indexes: list[Index]) -> None:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(QUERIES["table_columns"], {"tables": list({i.table_oid for i in indexes})})
        known = {(r["table_oid"], r["attnum"]): (r["name"], r["category"], r["not_null"]) for r in cur.fetchall()}
    for index in indexes:
        # attnum 0 is an expression: no table column behind it.
        found = [known.get((index.table_oid, n), (None, "", False)) for n in index.attnums]
        index.columns = [name for name, _, _ in found]
        index.categories = [category for _, category, _ in found]
        index.not_null = [not_null for _, _, not_null in found]
