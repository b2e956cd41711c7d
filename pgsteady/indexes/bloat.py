"""Bloated B-tree indexes, estimated from planner statistics.

Reading every page (pgstattuple) is exact but costs a full index scan and
an extension; this check only estimates, from the index's row count
(reltuples) and the average width of its columns (pg_stats), how many pages
a freshly built index would need, and compares that with its size now:

    tuple  = MAXALIGN(8-byte header [+ null bitmap] + sum(avg_width * (1 - null_frac)))
    leaf   = ceil(rows / floor(usable * fillfactor / (tuple + 4-byte line pointer)))
    pages  = leaf + internal pages (filled to 70%) + 1 metapage

A table that was never analysed has no statistics to estimate from: its
indexes are measured with pgstattuple's ``pgstatindex`` when the extension
is installed (it reads the whole index), and otherwise named in the
report's skipped list, never left out silently.

B-tree deduplication (PostgreSQL 13+) makes indexes on repetitive values
smaller than this, so the estimate errs towards *less* bloat. Every finding
says it is an estimate. The fix is REINDEX CONCURRENTLY, which keeps the
definition, so there is nothing to undo.
"""

from __future__ import annotations

import math
from typing import Iterator

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from . import ddl, probes
from .catalog import Index, Snapshot, human_bytes
from .queries import QUERIES
from .report import Finding

CHECK = "bloated_index"

PAGE_HEADER = 24  # PageHeaderData
BTREE_SPECIAL = 16  # BTPageOpaqueData at the end of every page
TUPLE_HEADER = 8  # IndexTupleData
NULL_BITMAP = 4  # present when any column is NULL
LINE_POINTER = 4
MAXALIGN = 8
LEAF_FILLFACTOR = 90  # B-tree default
INTERNAL_FILLFACTOR = 70  # BTREE_NONLEAF_FILLFACTOR


def _stat_key(index: Index, k: int) -> tuple[str, str, str]:
    """Where pg_stats keeps column k: the table's column, or the index's own row for an expression."""
    column = index.columns[k]
    if column is not None:
        return (index.schema, index.table, column)
    return (index.schema, index.name, index.index_attnames[k])


def expected_pages(rows: float, widths: list[tuple[float, float]], block_size: int, fillfactor: int) -> int:
    """Pages a freshly built B-tree of ``rows`` rows needs; ``widths`` is (avg_width, null_frac) per column."""
    header = TUPLE_HEADER + (NULL_BITMAP if any(nulls > 0 for _, nulls in widths) else 0)
    data = sum(width * (1 - nulls) for width, nulls in widths)
    item = math.ceil((header + data) / MAXALIGN) * MAXALIGN + LINE_POINTER
    usable = block_size - PAGE_HEADER - BTREE_SPECIAL
    per_leaf = max(1, int(usable * fillfactor / 100 // item))
    per_internal = max(2, int(usable * INTERNAL_FILLFACTOR / 100 // item))
    leaf = math.ceil(rows / per_leaf)
    internal, level = 0, leaf
    while level > 1:
        level = math.ceil(level / per_internal)
        internal += level
    return leaf + internal + 1


def findings(snap: Snapshot) -> Iterator[Finding]:
    t = snap.thresholds
    block = snap.server["block_size"]
    candidates = [i for i in snap.indexes
                  if i.method == "btree" and i.is_valid and i.relkind == "i" and i.bytes >= t.bloat_min_bytes]
    hidden = {i.table_qualified for i in candidates if not i.can_read_stats}
    if hidden:
        snap.skipped.append((CHECK, f"{len(hidden)} table(s) skipped: without SELECT on them this role "
                             "cannot see their column statistics"))
    candidates = [i for i in candidates if i.can_read_stats]
    stats = snap.column_stats(
        (*_stat_key(i, k), False) for i in candidates if i.reltuples > 0 for k in range(len(i.elements))
    )
    unmeasured: list[Index] = []
    for index in candidates:
        keys = [_stat_key(index, k) for k in range(len(index.elements))]
        if index.reltuples <= 0 or any(key not in stats for key in keys):
            unmeasured.append(index)  # never analysed: no estimate from statistics
            continue
        widths = [(stats[key]["avg_width"], stats[key]["null_frac"]) for key in keys]
        fillfactor = index.fillfactor or LEAF_FILLFACTOR
        expected = expected_pages(index.reltuples, widths, block, fillfactor)
        finding = _finding(index, expected, block, t.bloat_ratio, fillfactor,
                           "statistics (reltuples, pg_stats.avg_width)")
        if finding:
            yield finding
    if unmeasured:
        yield from _measured(snap, unmeasured, block)


def _finding(index: Index, expected: float, block: int, threshold: float, fillfactor: int,
             method: str) -> Finding | None:
    actual = index.bytes // block
    ratio = 1 - expected / actual if actual else 0.0
    if ratio < threshold:
        return None
    wasted = int((actual - expected) * block)
    how = "estimated from statistics" if method.startswith("statistics") else "measured with pgstattuple"
    return Finding(
        check=CHECK, severity="warn", objects=[index.qualified],
        message=(f"{index.qualified} is an estimated {ratio:.0%} empty space ({human_bytes(wasted)} of "
                 f"{human_bytes(index.bytes)}, {how}); rebuild it concurrently"),
        evidence={"estimate": True, "index_bytes": index.bytes, "expected_bytes": int(expected * block),
                  "bloat_bytes": wasted, "bloat_ratio": round(ratio, 3), "rows": int(max(index.reltuples, 0)),
                  "fillfactor": fillfactor, "method": method},
        fix_statements=[ddl.reindex(index)],
    )


def _measured(snap: Snapshot, indexes: list[Index], block: int) -> Iterator[Finding]:
    """Indexes of never-analysed tables: measured with pgstattuple when it is installed, else named as skipped."""
    names = ", ".join(i.qualified for i in indexes[:5]) + (f" and {len(indexes) - 5} more" if len(indexes) > 5 else "")
    schema = probes.extension(snap.conn, "pgstattuple")["schema"]
    if schema is None:
        snap.skipped.append((CHECK, f"{len(indexes)} index(es) not estimated because their tables were never "
                             f"analysed: {names}; run ANALYZE on those tables, or CREATE EXTENSION pgstattuple "
                             "to have them measured"))
        return
    query = sql.SQL(QUERIES["pgstatindex"]).format(pgst=sql.Identifier(schema))
    failed: list[str] = []
    for index in indexes:
        try:
            with snap.conn.transaction(), snap.conn.cursor(row_factory=dict_row) as cur:
                found = cur.execute(query, {"oid": index.oid}).fetchone()
        except psycopg.Error as exc:
            failed.append(f"{index.qualified} ({str(exc).strip().splitlines()[0]})")
            continue
        fillfactor = index.fillfactor or LEAF_FILLFACTOR
        # A fresh index fills its leaves to the fillfactor; what is below that, and empty or deleted
        # pages, is space a rebuild gives back.
        expected = found["leaf_pages"] * (found["avg_leaf_density"] or 0) / fillfactor + 1
        finding = _finding(index, expected, block, snap.thresholds.bloat_ratio, fillfactor,
                           "pgstattuple (pgstatindex: leaf density, empty and deleted pages)")
        if finding:
            finding.evidence["estimate"] = False
            yield finding
    if failed:
        snap.skipped.append((CHECK, f"pgstatindex failed for {len(failed)} index(es): {'; '.join(failed[:3])}"))
