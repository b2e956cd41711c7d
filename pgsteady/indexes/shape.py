"""Indexes whose shape does not fit their data.

- ``mostly_null_index``: the leading column is mostly NULL, so most entries
  serve no lookup with ``col = value``; a partial index ``WHERE col IS NOT
  NULL`` holds the useful part at a fraction of the size.
- ``array_btree_index``: a B-tree on an array column only answers
  whole-array equality and ordering; ``@>``, ``&&`` and ``<@`` need GIN.
- ``boolean_index``: a B-tree on one boolean column splits the table in two
  halves at best; a partial index on the rare value is small and selective.

None is given for an index of a table smaller than ``shape_min_rows`` (a
tiny table is read whole in a page or two) nor in pgsteady's own schema,
whose one-row tables are keyed that way on purpose. All three are ``info``: the index may be exactly what a query needs, so the
fix (build the better index concurrently, then drop this one) is a proposal
to review, and its undo restores the original.
"""

from __future__ import annotations

from typing import Any, Iterator

from . import ddl
from .catalog import Index, Snapshot, human_bytes
from .report import Finding

MOSTLY_NULL = "mostly_null_index"
ARRAY_BTREE = "array_btree_index"
BOOLEAN = "boolean_index"


def _btree(index: Index) -> bool:
    # A partition's index is judged through its parent's, like the other checks do.
    return index.method == "btree" and index.is_valid and not index.is_partition


def _plain_btree(index: Index) -> bool:
    return _btree(index) and index.predicate is None


def _lead_column(index: Index) -> str | None:
    return index.columns[0] if index.columns else None


def _replaceable(index: Index) -> bool:
    # Unique indexes enforce something; swapping them is a schema change, not a tune-up.
    return index.can_drop_concurrently and not index.is_unique


def _advisable(snap: Snapshot, index: Index) -> bool:
    """Shape advice is for tables big enough to matter, and never for pgsteady's own deliberate designs."""
    if index.schema in snap.own_schemas:
        return False
    if index.reltuples < 0:  # never vacuumed or analysed: judge by size (a megabyte is not tiny)
        return index.bytes >= 1 << 20
    return index.reltuples >= snap.thresholds.shape_min_rows


def findings(snap: Snapshot) -> Iterator[Finding]:
    indexes = [i for i in snap.indexes if _advisable(snap, i)]
    plain = [i for i in indexes if _plain_btree(i) and _lead_column(i) is not None]
    booleans = [i for i in plain
                if i.key_count == 1 and not i.include and i.categories[0] == "B"]
    wants_mcv = {id(i) for i in booleans}
    # A NOT NULL leading column cannot be mostly NULL: no statistics needed for it.
    needs_stats = [i for i in plain if not i.not_null[0] or id(i) in wants_mcv]
    lookups = [i for i in needs_stats if i.can_read_stats]
    hidden = {i.table_qualified for i in needs_stats if not i.can_read_stats}
    if hidden:
        snap.skipped.append((MOSTLY_NULL, f"{len(hidden)} table(s) skipped: without SELECT on them this role "
                             "cannot see their column statistics"))
    stats = snap.column_stats((i.schema, i.table, _lead_column(i), id(i) in wants_mcv) for i in lookups)
    for index in plain:
        row = stats.get((index.schema, index.table, _lead_column(index)))
        if row is not None and row["null_frac"] >= snap.thresholds.null_fraction:
            yield _mostly_null(snap, index, row)
    for index in indexes:
        if _btree(index) and "A" in index.categories[: index.key_count]:
            yield _array(snap, index)
    for index in booleans:
        yield _boolean(snap, index, stats.get((index.schema, index.table, _lead_column(index))))


def _mostly_null(snap: Snapshot, index: Index, row: dict[str, Any]) -> Finding:
    column = _lead_column(index)
    fix: list[str] = []
    undo: list[str] = []
    if _replaceable(index):
        new = snap.free_name(index.schema, f"{index.name}_notnull")
        fix, undo = ddl.replace(index, ddl.recreate_as(index, new, where=f"{ddl.ident(column)} IS NOT NULL"), new)
    return Finding(
        check=MOSTLY_NULL, severity="info", objects=[index.qualified],
        message=(f"{index.qualified} leads with {column}, which is {row['null_frac']:.0%} NULL; a partial index "
                 f"WHERE {column} IS NOT NULL serves the same lookups at a fraction of "
                 f"{human_bytes(index.bytes)} (unless queries look for {column} IS NULL)"),
        evidence={"column": column, "null_frac": round(row["null_frac"], 4), "index_bytes": index.bytes,
                  "rows": int(max(index.reltuples, 0)), "indexdef": index.indexdef},
        fix_statements=fix, undo_statements=undo,
    )


def _array(snap: Snapshot, index: Index) -> Finding:
    columns = [c for c, cat in zip(index.columns, index.categories[: index.key_count]) if cat == "A"]
    fix: list[str] = []
    undo: list[str] = []
    if _replaceable(index) and index.key_count == 1 and not index.include and columns[0] is not None:
        new = snap.free_name(index.schema, f"{index.table}_{columns[0]}_gin")
        stmt = ddl.create(new, index.table_qualified, columns, method="gin", where=index.predicate)
        fix, undo = ddl.replace(index, stmt, new)
    shown = ", ".join(c or "(expression)" for c in columns)
    return Finding(
        check=ARRAY_BTREE, severity="info", objects=[index.qualified],
        message=(f"{index.qualified} is a B-tree on array column {shown}: it only serves whole-array "
                 "equality and sorting; containment and overlap (@>, <@, &&) need a GIN index"),
        evidence={"columns": columns, "index_bytes": index.bytes, "idx_scan": index.idx_scan,
                  "indexdef": index.indexdef},
        fix_statements=fix, undo_statements=undo,
    )


def _frequencies(row: dict[str, Any] | None) -> dict[str, float] | None:
    """Share of true and false rows from the most common values, or None without statistics."""
    if row is None or row["most_common_vals"] is None:
        return None
    values = row["most_common_vals"].strip("{}").split(",")
    freqs = dict(zip(values, row["most_common_freqs"]))
    rest = max(0.0, 1 - row["null_frac"] - sum(freqs.values()))
    return {"true": freqs.get("t", rest), "false": freqs.get("f", rest), "null": row["null_frac"]}


def _boolean(snap: Snapshot, index: Index, row: dict[str, Any] | None) -> Finding:
    column = _lead_column(index)
    freqs = _frequencies(row)
    fix: list[str] = []
    undo: list[str] = []
    advice = "replace it with a partial index on the rare value, or drop it"
    if freqs is not None and _replaceable(index):
        rare = freqs["true"] <= freqs["false"]
        where = ddl.ident(column) if rare else f"NOT {ddl.ident(column)}"
        new = snap.free_name(index.schema, f"{index.table}_{column}_{'true' if rare else 'false'}")
        stmt = ddl.create(new, index.table_qualified, [column], where=where)
        fix, undo = ddl.replace(index, stmt, new)
        advice = f"a partial index WHERE {where} ({min(freqs['true'], freqs['false']):.0%} of rows) is smaller"
    return Finding(
        check=BOOLEAN, severity="info", objects=[index.qualified],
        message=f"{index.qualified} indexes boolean column {column} alone, which rarely narrows a search; {advice}",
        evidence={"column": column, "frequencies": freqs, "index_bytes": index.bytes, "idx_scan": index.idx_scan,
                  "indexdef": index.indexdef},
        fix_statements=fix, undo_statements=undo,
    )
