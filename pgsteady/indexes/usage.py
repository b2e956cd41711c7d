"""How indexes and tables are used: unused indexes, tables read by sequential scans.

Both read the activity counters (pg_stat_*), which count since the last
statistics reset; the age of that window is part of every finding, because
"no scans" means little if the counters were reset an hour ago. A replica
serves its own reads and keeps its own counters, so ``--also DSN`` adds each
replica's index scans before an index is called unused.
"""

from __future__ import annotations

import re
from typing import Any, Iterator

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ..database import describe, scrub
from . import ddl
from .foreign_keys import supports
from .catalog import ForeignKey, Index, Snapshot, human_age, human_bytes
from .probes import statements_schema
from .queries import QUERIES
from .report import Finding

UNUSED = "unused_index"
SEQ_SCANS = "seq_scan_table"
STATEMENTS = "heavy_statements"

STATEMENTS_READ = 500  # heaviest statements read from pg_stat_statements
STATEMENTS_SHOWN = 3  # per table, in the evidence


def _replica_scans(dsn: str) -> tuple[str, dict[tuple[str, str], int], Any]:
    with psycopg.connect(dsn, autocommit=True) as conn, conn.cursor(row_factory=dict_row) as cur:
        cur.execute(QUERIES["index_scans"])
        rows = cur.fetchall()
    reset = rows[0]["stats_reset"] if rows else None
    return describe(dsn), {(r["schema"], r["name"]): r["idx_scan"] or 0 for r in rows}, reset


def unused(snap: Snapshot) -> Iterator[Finding]:
    replicas = []
    for dsn in snap.also:
        try:
            replicas.append(_replica_scans(dsn))
        except (psycopg.Error, ValueError) as exc:  # any failure means we cannot judge
            lines = [line.strip() for line in scrub(str(exc)).splitlines() if line.strip()]
            reason = "; ".join(lines)[:300] if lines else type(exc).__name__
            snap.skipped.append((UNUSED, f"could not read index scans from {describe(dsn)}: {reason}"))
            return
    fks_by_table: dict[int, list[ForeignKey]] = {}
    for fk in snap.foreign_keys:
        fks_by_table.setdefault(fk.table_oid, []).append(fk)
    window = snap.stats_window()
    age, needed = window["stats_age_seconds"], snap.thresholds.unused_min_history_seconds
    if age is not None and age < needed:
        snap.skipped.append((UNUSED, f"not enough history: the statistics were reset {window['stats_age']} ago, "
                             f"and an index is only called unused after {human_age(needed)} of counting "
                             "(--unused-min-history)"))
        return
    floor = snap.thresholds.unused_min_bytes
    unused_ones = [i for i in snap.indexes if _unused(i, replicas, floor, fks_by_table)]
    last = {r["oid"]: r["last_idx_scan"]
            for r in snap.query("last_index_scans", {"oids": [i.oid for i in unused_ones]})} if unused_ones else {}
    for index in unused_ones:
        by_server = _scans(index, replicas, _label(snap))
        evidence = {"idx_scan": 0, "scans_by_server": by_server, "index_bytes": index.bytes,
                    "last_idx_scan": last.get(index.oid), **window, "indexdef": index.indexdef}
        if replicas:
            evidence["replica_stats_reset"] = {label: r.isoformat() if r else None for label, _, r in replicas}
        servers = (f" on any of {len(replicas) + 1} servers" if snap.server.get("in_recovery") else
                   f" on the primary and {len(replicas)} replica(s)" if replicas else "")
        yield Finding(
            check=UNUSED, severity="warn", objects=[index.qualified],
            message=(f"{index.qualified} ({human_bytes(index.bytes)}) has not been scanned{servers} "
                     f"{_since(window)}; drop it if that window covers your busy periods"),
            evidence=evidence, fix_statements=[ddl.drop(index)], undo_statements=[ddl.recreate(index)],
        )


def _label(snap: Snapshot) -> str:
    # `indexes check --read-dsn` reads the catalogue from a replica; the
    # primary's scans then come in through `also` under its own name.
    return describe(snap.conn.info.dsn) if snap.server.get("in_recovery") else "primary"


def _scans(index: Index, replicas: list, label: str = "primary") -> dict[str, int]:
    by_server = {label: index.idx_scan or 0}
    for label, scans, _ in replicas:
        by_server[label] = scans.get((index.schema, index.name), 0)
    return by_server


def _unused(index: Index, replicas: list, floor: int, fks_by_table: dict[int, list[ForeignKey]]) -> bool:
    # Unique and constraint indexes work without being scanned; partitions
    # are judged through their parent, and invalid ones are reported apart.
    if (not index.is_valid or not index.can_drop_concurrently or index.is_unique or index.bytes < floor
            or any(supports(index, fk) for fk in fks_by_table.get(index.table_oid, []))):
        return False
    return sum(_scans(index, replicas).values()) == 0


def _since(window: dict[str, Any]) -> str:
    if window["stats_age_seconds"] is None:
        return "since the statistics began (they were never reset)"
    return f"in the {window['stats_age']} since the statistics were reset"


def _statements(snap: Snapshot) -> list[dict[str, Any]] | None:
    """The heaviest statements of this database, or None (with the reason in skipped)."""
    schema = statements_schema(snap.conn)
    if schema is None:
        snap.skipped.append((STATEMENTS, "pg_stat_statements is not installed in this database "
                             "(CREATE EXTENSION pg_stat_statements; it also needs shared_preload_libraries)"))
        return None
    query = sql.SQL(QUERIES["heaviest_statements"]).format(pgss=sql.Identifier(schema))
    try:
        with snap.conn.transaction(), snap.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(query, {"limit": STATEMENTS_READ})
            rows = cur.fetchall()
    except psycopg.Error as exc:
        reason = str(exc).strip().splitlines()[0]
        snap.skipped.append((STATEMENTS, f"pg_stat_statements cannot be read: {reason}"))
        return None
    hidden = sum(r["query"] == "<insufficient privilege>" for r in rows)
    if hidden:
        snap.skipped.append((STATEMENTS, f"{hidden} statements of other roles are hidden from this role "
                             "(grant it pg_read_all_stats to see them)"))
    return [r for r in rows if r["query"] != "<insufficient privilege>"]


def _mentions(name: str, statements: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Text matching is the best pg_stat_statements allows: it does not record
    # which tables a statement touched. Unquoted names fold to lower case.
    pattern = re.compile(rf'(?<![\w$]){re.escape(name)}(?![\w$])|"{re.escape(name)}"', re.IGNORECASE)
    hits = [s for s in statements if pattern.search(s["query"])][:STATEMENTS_SHOWN]
    return [{"queryid": s["queryid"], "calls": s["calls"], "total_exec_ms": round(s["total_exec_time"], 1),
             "mean_exec_ms": round(s["mean_exec_time"], 3), "rows": s["rows"], "query": s["query"][:300]}
            for s in hits]


def seq_scans(snap: Snapshot) -> Iterator[Finding]:
    t = snap.thresholds
    tables = snap.query("seq_scanned_tables", {"schema": snap.schema, "table_oid": snap.table_oid,
                                                "min_seq_scans": t.min_seq_scans, "min_bytes": t.seq_scan_min_bytes})
    statements = _statements(snap)
    window = snap.stats_window()
    for table in tables:
        if table["seq_scan"] <= table["idx_scan"]:
            continue  # read mostly through indexes
        per_scan = table["seq_tup_read"] // max(table["seq_scan"], 1)
        evidence = {"seq_scan": table["seq_scan"], "idx_scan": table["idx_scan"],
                    "seq_tup_read": table["seq_tup_read"], "rows_per_seq_scan": per_scan,
                    "table_bytes": table["bytes"], "live_rows": table["n_live_tup"],
                    "last_seq_scan": table["last_seq_scan"], **window,
                    "statements": _mentions(table["name"], statements) if statements is not None else None}
        hint = ("; the heaviest statements naming it are in the evidence" if evidence["statements"]
                else "; find the statements that scan it and plan an index with `pgsteady change`")
        yield Finding(
            check=SEQ_SCANS, severity="warn", objects=[table["qualified"]],
            message=(f"{table['qualified']} ({human_bytes(table['bytes'])}) is read mostly by sequential scans: "
                     f"{table['seq_scan']} seq scans of ~{per_scan} rows vs {table['idx_scan']} index scans{hint}"),
            evidence=evidence,
        )
