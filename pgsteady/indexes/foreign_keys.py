"""Foreign keys without an index on the referencing columns.

PostgreSQL indexes the referenced side of a foreign key (it must be unique)
but not the referencing side. Without that index, every DELETE of a parent
row, or UPDATE of its key, scans the whole child table under lock, and joins
from parent to children have nothing to use. An index whose leading columns
are the key's columns, in any order, with no predicate, supports it.
"""

from __future__ import annotations

from typing import Iterator

from . import ddl
from .catalog import ForeignKey, Index, Snapshot, human_bytes
from .report import Finding

CHECK = "fk_without_index"


def supports(index: Index, fk: ForeignKey) -> bool:
    """The one answer to "does this index serve this foreign key": asked by this check and by
    ``unused_index`` (which keeps an unscanned index that serves one)."""
    if not (index.is_valid and index.predicate is None):
        return False
    # A hash index answers equality on one column, which is the lookup a
    # single-column key needs; B-tree answers any of its leading columns.
    if index.method != "btree" and not (index.method == "hash" and len(fk.attnums) == 1):
        return False
    lead = index.attnums[: len(fk.attnums)]
    return len(lead) == len(fk.attnums) and set(lead) == set(fk.attnums)


def findings(snap: Snapshot) -> Iterator[Finding]:
    by_table = snap.by_table()
    for fk in snap.foreign_keys:
        if any(supports(index, fk) for index in by_table.get(fk.table_oid, [])):
            continue
        cols = ", ".join(fk.columns)
        fix: list[str] = []
        undo: list[str] = []
        message = (f"{fk.table_qualified} ({cols}) references {fk.referenced} with no index on those columns: "
                   f"each DELETE or key UPDATE on {fk.referenced} scans {fk.table_qualified}")
        if fk.table_relkind == "p":
            # CREATE INDEX CONCURRENTLY does not work on a partitioned table.
            message += "; index each partition concurrently, then attach them to an index ON ONLY the parent"
        else:
            name = snap.free_name(fk.schema, f"{fk.table}_{'_'.join(fk.columns)}_idx")
            fix = [ddl.create(name, fk.table_qualified, fk.columns)]
            undo = [ddl.drop_named(fk.schema, name)]
        yield Finding(
            check=CHECK, severity="warn", objects=[fk.table_qualified, fk.referenced], message=message,
            evidence={"constraint": fk.name, "columns": fk.columns, "referenced": fk.referenced,
                      "table_bytes": fk.table_bytes, "table_rows": int(fk.table_rows),
                      "table_size": human_bytes(fk.table_bytes)},
            fix_statements=fix, undo_statements=undo,
        )
