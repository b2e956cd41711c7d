"""Bloated B-tree indexes, estimated from planner statistics.

Reading every page (pgstattuple) is exact but costs a full index scan and
an extension; this check only estimates, from the index's row count
(reltuples) and the average width of its columns (pg_stats), how many pages
a freshly built index would need, and compares that with its size now:

    tuple  = MAXALIGN(8-byte header [+ null bitmap] + sum(avg_width * (1 - null_frac)))
    leaf   = ceil(rows / floor(usable * fillfactor / (tuple + 4-byte line pointer)))
    pages  = leaf + internal pages (filled to 70%) + 1 metapage

B-tree deduplication (PostgreSQL 13+) makes indexes on repetitive values
smaller than this, so the estimate errs towards *less* bloat. Every finding
says it is an estimate. The fix is REINDEX CONCURRENTLY, which keeps the
definition, so there is nothing to undo.
"""

from __future__ import annotations

import math
from typing import Iterator

from . import ddl
from .catalog import Index, Snapshot, human_bytes
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
    candidates = [i for i in candidates if i.can_read_stats and i.reltuples > 0]
    stats = snap.column_stats(
        (*_stat_key(i, k), False) for i in candidates for k in range(len(i.elements))
    )
    for index in candidates:
        keys = [_stat_key(index, k) for k in range(len(index.elements))]
        if any(key not in stats for key in keys):
            continue  # never analysed: no estimate rather than a wrong one
        widths = [(stats[key]["avg_width"], stats[key]["null_frac"]) for key in keys]
        fillfactor = index.fillfactor or LEAF_FILLFACTOR
        expected = expected_pages(index.reltuples, widths, block, fillfactor)
        actual = index.bytes // block
        ratio = 1 - expected / actual if actual else 0.0
        if ratio < t.bloat_ratio:
            continue
        wasted = (actual - expected) * block
        yield Finding(
            check=CHECK, severity="warn", objects=[index.qualified],
            message=(f"{index.qualified} is an estimated {ratio:.0%} empty space ({human_bytes(wasted)} of "
                     f"{human_bytes(index.bytes)}, estimated from statistics); rebuild it concurrently"),
            evidence={"estimate": True, "index_bytes": index.bytes, "expected_bytes": expected * block,
                      "bloat_bytes": wasted, "bloat_ratio": round(ratio, 3), "rows": int(index.reltuples),
                      "fillfactor": fillfactor, "method": "statistics (reltuples, pg_stats.avg_width)"},
            fix_statements=[ddl.reindex(index)],
        )
