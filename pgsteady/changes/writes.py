"""The cost to writes: every index is paid for by every write to its table.

A new index makes each INSERT and DELETE maintain one more structure, and
it can turn HOT updates (which touch no index, and rewrite a row on its own
page) into full ones: an UPDATE that changes any column the index covers
(keys, INCLUDE columns, expression and predicate columns) can no longer be
HOT, on any index of the table. The read side can improve while the write
side gets much worse, so the change measures both:

- lint (``hot_update_findings``): the workload's UPDATE statements, read
  from pg_stat_statements and parsed with pglast, that change a column the
  new index covers: their updates stop being HOT;
- plan and apply (``snapshot``): the table's write counters
  (pg_stat_all_tables: rows inserted, updated, HOT-updated, deleted), its
  index size, the WAL position, and with pg_stat_statements the calls and
  times of the statements that write to it;
- verify (``compare``): the same figures before the apply (plan -> apply,
  or everything counted until the apply when nothing was written between)
  and after it (apply -> verify), and whether writes got worse.

The HOT and row figures need nothing but the statistics views; the
statement times need pg_stat_statements, and say so when it is missing.
"""

from __future__ import annotations

from typing import Any

import psycopg
from pglast import ast
from pglast.visitors import Visitor

from ..queries import Queries
from ..indexes import probes
from . import statements

HOT_DROP = 0.3  # the HOT share of updates falling by this much (absolute) is worse
MIN_UPDATES = 20  # fewer updates after the apply say nothing about HOT
SLOWER = 1.2
NOISE_MS = 0.1


# -- lint: which UPDATEs stop being HOT ---------------------------------------------------


class _Columns(Visitor):
    def __init__(self) -> None:
        self.names: set[str] = set()

    def visit_ColumnRef(self, ancestors, node):
        last = node.fields[-1] if node.fields else None
        if isinstance(last, ast.String):
            self.names.add(last.sval)


def indexed_columns(node: Any) -> set[str]:
    """Every table column an index statement covers: keys, expressions, INCLUDE, predicate."""
    found = _Columns()
    for elem in list(node.indexParams or ()) + list(node.indexIncludingParams or ()):
        if elem.name:
            found.names.add(elem.name)
        elif elem.expr is not None:
            found(elem.expr)
    if node.whereClause is not None:
        found(node.whereClause)
    return found.names


def updated_columns(text: str, schema: str, table: str) -> set[str]:
    """The columns of ``schema.table`` that one statement's UPDATE (or ON CONFLICT DO UPDATE) sets."""
    try:
        nodes = statements.parse(text)
    except statements.StatementError:
        return set()
    found: set[str] = set()

    class Sets(Visitor):
        def visit_UpdateStmt(self, ancestors, node):
            if _is(node.relation, schema, table):
                found.update(t.name for t in node.targetList or () if t.name)

        def visit_InsertStmt(self, ancestors, node):
            conflict = node.onConflictClause
            if conflict is not None and conflict.targetList and _is(node.relation, schema, table):
                found.update(t.name for t in conflict.targetList if t.name)

    for node in nodes:
        Sets()(node)
    return found


def _is(rel: Any, schema: str, table: str) -> bool:
    return rel is not None and rel.relname == table and rel.schemaname in (None, schema)


def write_statements(conn: psycopg.Connection, q: Queries, table: str) -> list[dict[str, Any]] | None:
    """The statements that write and name ``table``, or None when pg_stat_statements cannot be read."""
    return probes.statements_naming(conn, table, writes=True, limit=200)


def hot_update_warnings(conn: psycopg.Connection, q: Queries, st: Any, schema: str, table: str) -> list[str]:
    """One line for each column the new index covers that the workload's UPDATEs change."""
    found = write_statements(conn, q, table)
    if not found:
        return []
    covered = indexed_columns(st.node)
    hits: dict[str, int] = {}
    for s in found:
        for column in updated_columns(s["query"], schema, table) & covered:
            hits[column] = hits.get(column, 0) + s["calls"]
    return [f"the workload's UPDATE statements change {column} ({calls:,} calls recorded by pg_stat_statements); "
            f"with {st.index} covering it, those updates stop being HOT and maintain every index of the table: "
            "weigh that against the reads it speeds up" for column, calls in sorted(hits.items(), key=lambda kv: -kv[1])]


def hot_update_findings(conn: psycopg.Connection, q: Queries, st: Any, schema: str, table: str, result: Any) -> None:
    """The same, as lint notes."""
    for message in hot_update_warnings(conn, q, st, schema, table):
        result.add("hot-updates-stop", message, "note")


# -- plan, apply, verify: the figures --------------------------------------------------------


def snapshot(conn: psycopg.Connection, q: Queries, table_oid: int | None, relkind: str | None,
             table: str | None) -> dict[str, Any] | None:
    """The write counters of one table now (summed over partitions for a partitioned table)."""
    if table_oid is None:
        return None
    figures = dict(probes.write_counters(conn, table_oid, partitioned=relkind == "p"))
    figures["at"] = figures["at"].isoformat()
    stmts = write_statements(conn, q, (table or "").split(".")[-1].strip('"'))
    figures["statements"] = None if stmts is None else {
        str(s["queryid"]): {"calls": s["calls"], "total_exec_time": s["total_exec_time"], "query": s["query"][:200]}
        for s in stmts}
    return figures


def _window(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    updated = b["updated"] - a["updated"]
    hot = b["hot_updated"] - a["hot_updated"]
    written = updated + (b["inserted"] - a["inserted"]) + (b["deleted"] - a["deleted"])
    wal = (b["wal_position"] - a["wal_position"]) if a.get("wal_position") is not None \
        and b.get("wal_position") is not None else None
    return {"updates": updated, "hot_updates": hot, "hot_ratio": round(hot / updated, 3) if updated else None,
            "rows_written": written, "wal_bytes": wal,
            "wal_bytes_per_row": round(wal / written) if wal is not None and written else None}


_ZERO = {"updated": 0, "hot_updated": 0, "inserted": 0, "deleted": 0, "wal_position": None}


def compare(planned: dict[str, Any] | None, baseline: dict[str, Any] | None,
            now: dict[str, Any] | None) -> dict[str, Any] | None:
    """Writes before the apply against writes after it, and whether they got worse."""
    if baseline is None or now is None:
        return None
    def cumulative(f: dict[str, Any]) -> int:
        return f["updated"] + f["inserted"] + f["deleted"]

    if planned is not None and cumulative(baseline) > cumulative(planned):
        before = _window(planned, baseline)  # what was written between the plan and the apply
    else:
        before = _window(_ZERO, baseline)  # everything counted until the apply
        before["wal_bytes"] = before["wal_bytes_per_row"] = None  # WAL since the server began says nothing
    after = _window(baseline, now)
    result: dict[str, Any] = {"before": before, "after": after,
                              "index_growth_bytes": now["index_bytes"] - baseline["index_bytes"],
                              "statements": _statement_times(baseline.get("statements"), now.get("statements"))}
    problems = []
    if (after["updates"] >= MIN_UPDATES and before["hot_ratio"] is not None and after["hot_ratio"] is not None
            and after["hot_ratio"] < before["hot_ratio"] - HOT_DROP):
        problems.append(f"HOT updates fell from {before['hot_ratio']:.0%} to {after['hot_ratio']:.0%} of "
                        f"{after['updates']:,} updates")
    for s in result["statements"] or ():
        if s["calls_after"] >= MIN_UPDATES and s["mean_ms_after"] > s["mean_ms_before"] * SLOWER + NOISE_MS:
            problems.append(f"{s['query'][:80]!r} went from {s['mean_ms_before']:.2f} ms to "
                            f"{s['mean_ms_after']:.2f} ms")
    result["worse"] = bool(problems)
    result["why"] = "; ".join(problems) if problems else "writes cost about the same"
    if result["statements"] is None:
        result["statements_note"] = ("pg_stat_statements is not readable here, so write statement times were "
                                     "not compared (the HOT and row figures come from pg_stat_all_tables)")
    return result


def _statement_times(before: dict | None, after: dict | None) -> list[dict[str, Any]] | None:
    if before is None or after is None:
        return None
    out = []
    for qid, a in after.items():
        b = before.get(qid)
        if not b or not b["calls"]:
            continue
        calls = a["calls"] - b["calls"]
        if calls <= 0:
            continue
        out.append({"query": a["query"], "calls_before": b["calls"], "calls_after": calls,
                    "mean_ms_before": round(b["total_exec_time"] / b["calls"], 3),
                    "mean_ms_after": round((a["total_exec_time"] - b["total_exec_time"]) / calls, 3)})
    return sorted(out, key=lambda s: -s["calls_after"])[:5]


def describe(figures: dict[str, Any]) -> list[str]:
    """The write side in a few lines, for the note and the terminal."""
    def ratio(w):
        return "–" if w["hot_ratio"] is None else f"{w['hot_ratio']:.0%}"

    b, a = figures["before"], figures["after"]
    lines = [f"Writes before: {b['rows_written']:,} rows written, {b['updates']:,} updates, {ratio(b)} HOT"
             + (f", {b['wal_bytes_per_row']:,} WAL bytes per row" if b.get("wal_bytes_per_row") else ""),
             f"Writes after: {a['rows_written']:,} rows written, {a['updates']:,} updates, {ratio(a)} HOT"
             + (f", {a['wal_bytes_per_row']:,} WAL bytes per row" if a.get("wal_bytes_per_row") else "")
             + f"; indexes grew {figures['index_growth_bytes']:,} bytes"]
    for s in figures.get("statements") or ():
        lines.append(f"Write statement {s['query'][:80]!r}: {s['mean_ms_before']:.2f} ms -> "
                     f"{s['mean_ms_after']:.2f} ms ({s['calls_after']:,} calls after)")
    if figures.get("statements_note"):
        lines.append(figures["statements_note"])
    lines.append(("Writes got worse: " if figures["worse"] else "Writes: ") + figures["why"])
    return lines
