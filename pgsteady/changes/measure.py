"""Step 2, plan: capture current behaviour before anything changes.

For the table: size, rows, existing indexes. For each representative query:
``EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON)`` run ``repeat`` times after one
warm-up run, with the median and p95 execution time and the plan as short
lines (which are what the record compares later). Queries run in a READ
ONLY transaction that is rolled back, so a query cannot write.

With HypoPG on the server, the proposed index is also created
*hypothetically* (in backend memory only, inside a rolled-back transaction
on a connection of its own) to ask the planner whether it would use it and
at what cost. Without HypoPG the figures say why they are missing.
"""

from __future__ import annotations

import math
import statistics
import time
from datetime import datetime, timezone
from typing import Any

import psycopg

from ..database import connect
from ..indexes import sandbox
from ..queries import Queries
from ..indexes import probes
from . import statements, writes
from .files import ChangeFile, Query
from .statements import IndexChange
from .targets import Target

HYPOPG_MISSING = ("HypoPG is not installed on this server, so the planner was not asked about the new index "
                  "(install it, e.g. apt-get install postgresql-15-hypopg, to get that answer before the build)")


def explain(conn: psycopg.Connection, query: Query, text: str | None = None) -> dict[str, Any]:
    """Run one query under EXPLAIN ANALYZE, 1 + repeat times; figures of the counted runs."""
    # The query is the change file's SQL as the parser read it (one plain SELECT,
    # see statements.parse_query), printed back by the parser; its values go as
    # bound parameters, through the extended protocol, in a READ ONLY transaction
    # that is rolled back, with the lexing settings pinned (indexes.sandbox).
    sql_text = f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {text or printed(query)}"
    times: list[float] = []
    planning: list[float] = []
    plan: dict[str, Any] = {}
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        sandbox.pin(conn, local=True)
        for i in range(query.repeat + 1):
            plan = sandbox.execute_one(cur, sql_text, query.params).fetchone()[0][0]
            if i:  # the first run warms the cache and is not counted
                times.append(plan["Execution Time"])
                planning.append(plan.get("Planning Time", 0.0))
    top = plan["Plan"]
    return {
        "name": query.name,
        "runs": len(times),
        "median_ms": round(statistics.median(times), 3),
        "p95_ms": round(percentile(times, 95), 3),
        "min_ms": round(min(times), 3),
        "planning_ms": round(statistics.median(planning), 3),
        "total_cost": top.get("Total Cost"),
        "rows": top.get("Actual Rows"),
        "shared_hit": top.get("Shared Hit Blocks", 0),
        "shared_read": top.get("Shared Read Blocks", 0),
        "plan_lines": plan_lines(top),
        "indexes": sorted(set(indexes_used(top))),
    }


def printed(query: Query) -> str:
    """The query as pglast prints what it parsed: the text that runs."""
    return statements.rewrite_query(statements.parse_query(query.sql), {})


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile: with 7 runs, p95 is the slowest."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def plan_lines(node: dict[str, Any], depth: int = 0) -> list[str]:
    """A plan as short, stable lines: the node, its relation or index, its sort key."""
    text = node["Node Type"]
    if node.get("Index Name"):
        text += f" using {node['Index Name']}"
    if node.get("Relation Name"):
        text += f" on {node['Relation Name']}"
    if node.get("Sort Key"):
        text += f" (key: {', '.join(node['Sort Key'])})"
    lines = ["  " * depth + text]
    for child in node.get("Plans", []):
        lines += plan_lines(child, depth + 1)
    return lines


def indexes_used(node: dict[str, Any]) -> list[str]:
    found = [node["Index Name"]] if node.get("Index Name") else []
    for child in node.get("Plans", []):
        found += indexes_used(child)
    return found


def table_facts(conn: psycopg.Connection, q: Queries, table_oid: int) -> dict[str, Any]:
    facts = probes.table_facts(conn, table_oid)
    facts["indexes"] = probes.table_indexes(conn, table_oid)
    return facts


def plan(change: ChangeFile, conn: psycopg.Connection, q: Queries, st: IndexChange, target: Target,
         dsn: str) -> dict[str, Any]:
    """The figures of the plan step (stored whole in changes.plan)."""
    started = time.monotonic()
    conn.execute("SET statement_timeout = '5min'")  # a runaway representative query must not hang the step
    figures: dict[str, Any] = {"captured_at": datetime.now(timezone.utc).isoformat(),
                               "server_version": probes.server_facts(conn)["version"]}
    if target.table_oid is not None:
        figures["table"] = table_facts(conn, q, target.table_oid)
    figures["queries"] = [explain(conn, query) for query in change.queries]
    figures["writes"] = writes.snapshot(conn, q, target.table_oid, target.table_relkind, target.table)
    if st.kind == "create" and target.table_oid is not None:
        facts = figures["table"]
        figures["write_warnings"] = writes.hot_update_warnings(conn, q, st, facts["schema"], facts["name"])
    figures["hypothetical"] = hypothetical(dsn, q, st, target, change.queries) if st.kind == "create" else None
    figures["estimate"] = estimate(conn, q, st, target, figures)
    figures["seconds"] = round(time.monotonic() - started, 3)
    return figures


def hypothetical(dsn: str, q: Queries, st: IndexChange, target: Target, queries: list[Query]) -> dict[str, Any]:
    """Would the planner use the proposed index, and at what cost? (HypoPG)"""
    with connect(dsn, autocommit=True) as conn:
        status = probes.extension(conn, "hypopg")
        if not status["available"]:
            return {"available": False, "reason": HYPOPG_MISSING}
        try:
            with conn.transaction(force_rollback=True):
                sandbox.pin(conn, local=True)
                if status["schema"] is None:
                    # Created and rolled back with this transaction: nothing stays in the database.
                    conn.execute("CREATE EXTENSION hypopg")
                before = {query.name: _cost(conn, query) for query in queries}
                ddl = statements.on_schema(st, target.table_schema) if target.table_schema else \
                    statements.without_concurrently(st)
                hypo = probes.hypopg_create(conn, ddl)
                size = probes.hypopg_size(conn, hypo["indexrelid"])
                result = {"available": True, "index_name": hypo["indexname"], "estimated_bytes": size,
                          "queries": {}}
                for query in queries:
                    cost, used = _cost(conn, query)
                    result["queries"][query.name] = {"cost_before": before[query.name][0], "cost_after": cost,
                                                     "uses_index": hypo["indexname"] in used}
                return result
        except psycopg.Error as exc:
            return {"available": False, "reason": f"HypoPG could not be used: {str(exc).strip().splitlines()[0]}"}


def _cost(conn: psycopg.Connection, query: Query) -> tuple[float, list[str]]:
    with conn.cursor() as cur:
        plan = sandbox.execute_one(cur, f"EXPLAIN (FORMAT JSON) {printed(query)}", query.params).fetchone()[0][0]["Plan"]
    return plan["Total Cost"], indexes_used(plan)


def estimate(conn: psycopg.Connection, q: Queries, st: IndexChange, target: Target,
             figures: dict[str, Any]) -> dict[str, Any] | None:
    """A rough size and build time for a new index; the rehearsal measures the real one.

    Size: each B-tree leaf tuple costs an 8-byte header plus its keys, aligned
    to 8 bytes, plus a 4-byte line pointer, in pages filled to 90%. Time: a
    concurrent build reads the table twice; assume 150 MB/s for each pass,
    plus 1 microsecond per row for sorting.
    """
    if st.kind != "create" or "table" not in figures:
        return None
    table = figures["table"]
    columns = [p.name for p in st.node.indexParams if p.name]
    expressions = len(st.node.indexParams) - len(columns)
    width = probes.key_width(conn, target.table_schema, table["name"], columns) + 8 * expressions
    # reltuples (set by VACUUM and ANALYZE) is steadier than the n_live_tup counter.
    rows_ = table["estimated_rows"] or table["live_rows"] or 0
    tuple_bytes = ((8 + width + 7) // 8) * 8 + 4
    size = int(rows_ * tuple_bytes / 0.9)
    hypo = figures.get("hypothetical") or {}
    seconds = 2 * table["heap_bytes"] / (150 << 20) + rows_ * 1e-6
    return {"index_bytes": hypo.get("estimated_bytes") or size, "build_seconds": round(seconds, 1),
            "basis": "HypoPG" if hypo.get("estimated_bytes") else "rows x key width from pg_stats",
            "rows": rows_}
