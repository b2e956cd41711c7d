"""Duplicate and redundant indexes, and the same test for a proposed index.

Two indexes are *exact duplicates* when they share table, method, key
columns or expressions (with opclass, collation and sort order), INCLUDE
columns and predicate. Uniqueness is not part of it: a unique and a plain
index on the same columns are duplicates, and the unique one is kept.

An index A is *redundant* with B when A's keys are a leading prefix of B's
(same opclasses, collations, order), A's INCLUDE columns are among B's
columns and the predicates are equal: every lookup A can serve, B serves.
Only B-tree is judged: for GIN, GiST or BRIN a prefix index is not the same
access path. A unique or constraint index is never the one to drop.

``find_overlaps`` asks the same questions of an index that does not exist
yet: it builds the proposal on an empty temporary copy of the table inside
a rolled-back transaction, reads it back through the same catalogue query,
and compares. The real table is never locked beyond ACCESS SHARE. The
proposal is read with pglast and run as pglast prints it (see sandbox).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import psycopg
from pglast import ast
from psycopg import sql

from ..database import connect
from ..errors import ConfigError
from . import ddl, sandbox
from .catalog import Index, Snapshot, load_index, load_indexes, resolve_scope
from .report import Finding

DUPLICATE = "duplicate_index"
REDUNDANT = "redundant_index"


def _keep_rank(index: Index) -> tuple:
    """Which duplicate to keep: constraints first, then unique, then the most used, then the oldest."""
    return (index.backs_constraint, index.is_primary, index.is_unique, index.idx_scan or 0, -index.oid)


def covers(big: Index, small: Index) -> bool:
    """True when ``big`` serves every lookup ``small`` serves (B-tree only, see module doc)."""
    if big.method != "btree" or small.method != "btree" or big.table_oid != small.table_oid:
        return False
    if big.predicate != small.predicate or small.shape == big.shape:
        return False
    if big.keys[: len(small.keys)] != small.keys:
        return False
    # Equal keys: small is only redundant when big INCLUDEs strictly more.
    return set(small.include) <= set(big.elements)


def _evidence(index: Index) -> dict:
    return {"columns": index.key_elements, "include": list(index.include), "predicate": index.predicate,
            "method": index.method, "index_bytes": index.bytes, "idx_scan": index.idx_scan,
            "is_unique": index.is_unique, "indexdef": index.indexdef}


def _fix(index: Index) -> tuple[list[str], list[str]]:
    if index.can_drop_concurrently:
        return [ddl.drop(index)], [ddl.recreate(index)]
    return [], []


def duplicates(snap: Snapshot) -> Iterator[Finding]:
    groups: dict[tuple, list[Index]] = defaultdict(list)
    for index in snap.indexes:
        if index.is_valid and not index.is_partition:
            groups[index.shape].append(index)
    for group in groups.values():
        if len(group) < 2:
            continue
        keep = max(group, key=_keep_rank)
        for extra in sorted(group, key=lambda i: i.name):
            if extra is keep:
                continue
            fix, undo = _fix(extra)
            message = f"{extra.qualified} duplicates {keep.qualified} exactly; drop {extra.qualified}"
            if not fix:
                message += (f" (it backs constraint {extra.constraint_name}: drop the constraint in a quiet moment)"
                            if extra.backs_constraint else " (a partitioned index cannot be dropped concurrently)")
            yield Finding(
                check=DUPLICATE, severity="warn", objects=[extra.qualified, keep.qualified], message=message,
                evidence={"index": _evidence(extra), "kept": {"name": keep.qualified, **_evidence(keep)}},
                fix_statements=fix, undo_statements=undo,
            )


def redundant(snap: Snapshot) -> Iterator[Finding]:
    for indexes in snap.by_table().values():
        candidates = [i for i in indexes if i.is_valid and not i.is_partition]
        for small in candidates:
            if small.is_unique or small.backs_constraint:
                continue
            covering = [big for big in candidates if big is not small and covers(big, small)]
            if not covering:
                continue
            # The closest cover (fewest keys) is the clearest evidence.
            big = min(covering, key=lambda i: (len(i.keys), len(i.elements), i.name))
            fix, undo = _fix(small)
            yield Finding(
                check=REDUNDANT, severity="warn", objects=[small.qualified, big.qualified],
                message=(f"{small.qualified} is redundant: its columns lead {big.qualified}, "
                         f"which serves the same lookups; drop {small.qualified}"),
                evidence={"index": _evidence(small), "covered_by": {"name": big.qualified, **_evidence(big)}},
                fix_statements=fix, undo_statements=undo,
            )


@dataclass(frozen=True)
class Overlap:
    """An existing index that a proposed one would duplicate, be redundant with, or make redundant.

    ``kind`` is ``"duplicate"`` (same index), ``"covered"`` (the proposal is
    redundant: ``index`` already serves it) or ``"covers"`` (the proposal
    would make ``index`` redundant).
    """

    kind: str
    index: str
    indexdef: str


def find_overlaps(
    conn_or_dsn: psycopg.Connection | str, table: str | None = None, spec: str | Sequence[str] | Any = ()
) -> list[Overlap]:
    """Existing indexes that overlap a proposed one.

    ``spec`` is a list of column names (a plain B-tree on them), a full
    ``CREATE INDEX`` statement (then ``table`` may be None) or its parsed
    IndexStmt node, or the part of one after the table name, such as
    ``"USING gin (tags)"`` or ``"(lower(email)) WHERE deleted_at IS NULL"``.

    The text is read with PostgreSQL's parser (pglast) and must be exactly one
    CREATE INDEX; what runs is that statement as the parser printed it, aimed
    at an empty temporary copy of the table, through the extended protocol
    (one statement, so nothing can follow it out of the transaction), with
    the lexing settings pinned, inside a transaction that is rolled back.
    """
    if isinstance(spec, str):
        try:
            node = ddl.index_statement(spec)
        except ConfigError:
            # The part after the table name: parsed as a whole statement, so a
            # tail that closes the statement early does not parse as one.
            node = ddl.index_statement(f"CREATE INDEX pgsteady_proposed_idx ON pgsteady_proposed {spec}")
        else:
            table = table or _relation_name(node.relation)
    elif isinstance(spec, ast.IndexStmt):
        node = spec
        table = table or _relation_name(node.relation)
    else:
        if not spec:
            raise ConfigError("a proposed index needs at least one column")
        node = ddl.index_statement("CREATE INDEX pgsteady_proposed_idx ON pgsteady_proposed ("
                                   + ", ".join(ddl.ident(c) for c in spec) + ")")
    if not table:
        raise ConfigError("say which table the proposed index is on")
    conn = connect(conn_or_dsn, autocommit=True) if isinstance(conn_or_dsn, str) else conn_or_dsn
    try:
        return _compare(conn, table, node)
    finally:
        if conn is not conn_or_dsn:
            conn.close()


def _relation_name(rel: Any) -> str:
    return ".".join(ddl.ident(p) for p in (rel.schemaname, rel.relname) if p)


def _compare(conn: psycopg.Connection, table: str, node: Any) -> list[Overlap]:
    table_oid = resolve_scope(conn, None, table)
    copy = ast.RangeVar(schemaname="pg_temp", relname="pgsteady_proposed", inh=True, relpersistence="p")
    statement = ddl.deparse(node, relation=copy, idxname="pgsteady_proposed_idx", concurrent=False,
                            if_not_exists=False)
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        sandbox.pin(conn, local=True)
        cur.execute("SELECT n.nspname, c.relname, quote_ident(n.nspname) || '.' || quote_ident(c.relname) "
                    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s", [table_oid])
        schema, name, qualified = cur.fetchone()
        cur.execute(sql.SQL("CREATE TEMP TABLE pgsteady_proposed (LIKE {}) ON COMMIT DROP").format(
            sql.Identifier(schema, name)))
        try:
            sandbox.execute_one(cur, statement)
        except psycopg.Error as exc:
            first = str(exc).strip().splitlines()[0]
            raise ConfigError(f"the proposed index does not build on {qualified}: {first}") from None
        cur.execute("SELECT 'pg_temp.pgsteady_proposed_idx'::regclass::oid")
        proposed = load_index(conn, cur.fetchone()[0])
        existing = load_indexes(conn, table_oid=table_oid)
    found: list[Overlap] = []
    for index in existing:
        if not index.is_valid:
            continue
        # The copy has another oid; compare as if it sat on the real table.
        proposed.table_oid = index.table_oid
        if index.shape == proposed.shape:
            # A unique proposal over a plain index adds a constraint: it is
            # not a duplicate, it makes the plain one redundant.
            kind = "covers" if proposed.is_unique and not index.is_unique else "duplicate"
            found.append(Overlap(kind, index.qualified, index.indexdef))
        elif not proposed.is_unique and covers(index, proposed):
            found.append(Overlap("covered", index.qualified, index.indexdef))
        elif not (index.is_unique or index.backs_constraint) and covers(proposed, index):
            found.append(Overlap("covers", index.qualified, index.indexdef))
    return found
