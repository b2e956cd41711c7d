"""Invalid indexes: a build still running, or a dead leftover to clean up.

An index is INVALID while CREATE INDEX CONCURRENTLY builds it, and stays
INVALID forever if that build failed or was cancelled: the planner ignores
it but every write still maintains it. Telling the two apart by query text
(pg_stat_activity) is fragile, so this asks pg_stat_progress_create_index,
which names the index being built:

    progress row with index_relid = this index   -> building (info)
    REINDEX CONCURRENTLY running on the table and
    this is its _ccnew/_ccold companion           -> building (info)
    progress row whose details this role may not
    see, from a backend that locks the table      -> building, probably (info)
    none of the above                             -> dead leftover (error)

REINDEX CONCURRENTLY builds ``<name>_ccnew`` beside the index and, once
swapped, drops ``<name>_ccold``. Interrupted, it leaves one of them behind
INVALID while the original index keeps working; the finding says so.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

from . import ddl
from .catalog import Index, Snapshot
from .report import Finding

CHECK = "invalid_index"

_REINDEX_LEFTOVER = re.compile(r"^(?P<base>.+)_cc(?P<kind>new|old)\d*$")


def _build_of(index: Index, builds: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The progress row of the build that owns ``index``, if one is running."""
    leftover = _REINDEX_LEFTOVER.match(index.name)
    for build in builds:
        if build["index_oid"] == index.oid:
            return build
        if build["table_oid"] == index.table_oid:
            # index_relid is 0 for a moment while a build initialises, and a
            # REINDEX CONCURRENTLY reports the old index, not its _ccnew.
            if not build["index_oid"] or (leftover and (build["command"] or "").startswith("REINDEX")):
                return build
        if build["table_oid"] is None and index.table_oid in (build["locked"] or []):
            return build  # another role's build: details hidden, but it holds the table
    return None


def findings(snap: Snapshot) -> Iterator[Finding]:
    by_name = {(i.table_oid, i.name): i for i in snap.indexes}
    for index in snap.indexes:
        if index.is_valid:
            continue
        state = {"is_valid": index.is_valid, "is_ready": index.is_ready, "is_live": index.is_live,
                 "index_bytes": index.bytes, "indexdef": index.indexdef}
        build = _build_of(index, snap.builds)
        if build is not None:
            hidden = build["table_oid"] is None
            yield Finding(
                check=CHECK,
                severity="info",
                objects=[index.qualified],
                message=(
                    f"{index.qualified} is being built right now (pid {build['pid']}"
                    + (", details hidden from this role" if hidden else f", {build['phase']}")
                    + "); leave it alone"
                ),
                evidence={**state, "state": "building", "pid": build["pid"], "command": build["command"],
                          "phase": build["phase"], "details_hidden": hidden},
            )
            continue
        if index.relkind == "I":
            yield _partitioned(snap, index, state)
            continue
        yield _dead(index, state, by_name)


def _partitioned(snap: Snapshot, index: Index, state: dict[str, Any]) -> Finding:
    """An INVALID partitioned index: some partition has no valid index attached to it.

    Dropping the parent would drop every attached index with it, valid ones
    included; the repair is to build the missing partition indexes
    concurrently and attach them, which makes the parent valid.
    """
    missing = snap.query("unattached_partitions", {"index_oid": index.oid})
    fix: list[str] = []
    nested: list[str] = []
    for part in missing:
        if part["relkind"] != "r":
            nested.append(part["qualified"])
            continue
        name = snap.free_name(part["schema"], f"{part['name']}_{index.name}")
        fix += [ddl.on_partition(index.indexdef, part["schema"], part["name"], name),
                ddl.attach(index.schema, index.name, part["schema"], name)]
    names = ", ".join(p["qualified"] for p in missing) or "none found (an attached partition index is INVALID)"
    message = (f"{index.qualified} is an INVALID partitioned index: partitions without an attached index: {names}. "
               "Do not drop it (that drops every attached index, valid ones too): build each missing "
               "partition's index concurrently and attach it; the parent turns valid with the last one")
    if nested:
        message += (f"; {', '.join(nested)} is itself partitioned: index it ON ONLY, its partitions concurrently, "
                    "and attach those first")
    if not missing:
        message += "; rebuild the INVALID partition index (REINDEX INDEX CONCURRENTLY) and it turns valid"
    return Finding(check=CHECK, severity="error", objects=[index.qualified], message=message,
                   evidence={**state, "state": "partitioned, partitions missing",
                             "missing_partitions": [p["qualified"] for p in missing]},
                   fix_statements=fix)


def _dead(index: Index, state: dict[str, Any], by_name: dict[tuple[int, str], Index]) -> Finding:
    leftover = _REINDEX_LEFTOVER.match(index.name)
    original = by_name.get((index.table_oid, leftover.group("base"))) if leftover else None
    fix, undo = [], []
    if index.relkind == "i" and not index.is_partition:
        fix, undo = [ddl.drop(index)], [ddl.recreate(index)]
    if original is not None and original.is_valid:
        kind = "REINDEX CONCURRENTLY leftover"
        message = (
            f"{index.qualified} is an INVALID leftover of an interrupted REINDEX CONCURRENTLY "
            f"(_cc{leftover.group('kind')}); {original.qualified} is intact, drop the leftover"
        )
    else:
        kind = "dead"
        message = (
            f"{index.qualified} is INVALID and no build is running: the planner ignores it but every "
            "write still pays for it; drop it, then rebuild it with the undo SQL if it is still wanted"
        )
    if not fix:
        message += " (a partitioned index cannot be dropped concurrently; drop it in a quiet moment)"
    evidence = {**state, "state": kind}
    if leftover:
        evidence["reindex_leftover"] = f"_cc{leftover.group('kind')}"
        evidence["original_index"] = original.qualified if original else None
    return Finding(check=CHECK, severity="error", objects=[index.qualified], message=message,
                   evidence=evidence, fix_statements=fix, undo_statements=undo)
