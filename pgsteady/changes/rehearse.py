"""Step 3, rehearse: apply the change to a copy of real data, compare, drop the copy.

The copy lives in a scratch schema of the same database
(``pgsteady_rehearsal_<n>``): every table the change or its queries read is
copied there (all rows, or a ``TABLESAMPLE SYSTEM`` sample), with the
existing indexes rebuilt under their own names, so the plans of the copy are
the plans of production at this size. Then the change runs on the copy, the
queries run again against it (rewritten through the parser to read the
copy), and the schema is dropped, also when something fails.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

import psycopg
from psycopg import sql

from ..indexes import sandbox
from ..queries import Queries
from ..indexes import probes
from . import cleanup, measure, statements
from .files import ChangeFile
from .statements import IndexChange
from .targets import Target


def rehearse(change: ChangeFile, conn: psycopg.Connection, q: Queries, st: IndexChange,
             target: Target) -> dict[str, Any]:
    """Figures of the rehearsal; ``conn`` must be in autocommit mode."""
    scratch = f"pgsteady_rehearsal_{secrets.token_hex(4)}"
    timings: dict[str, float] = {}
    clock = time.monotonic()

    def lap(name: str) -> None:
        nonlocal clock
        now = time.monotonic()
        timings[name] = round(now - clock, 3)
        clock = now

    tables = _tables(conn, q, change, target)
    figures: dict[str, Any] = {"schema": scratch, "sample": change.sample, "tables": [], "queries": []}
    conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(scratch)))
    try:
        cleanup.mark_schema(conn, q, scratch)  # a killed rehearsal's copy is found and dropped later
        for table in {t["oid"]: t for t in tables.values()}.values():
            figures["tables"].append(copy_table(conn, q, table, scratch, change.sample))
        lap("copy")
        moved = {key: scratch for key in tables}
        parsed = {query.name: statements.parse_query(query.sql) for query in change.queries}
        before = [measure.explain(conn, query, statements.rewrite_query(parsed[query.name], moved))
                  for query in change.queries]
        lap("explain_before")
        with conn.cursor() as cur:
            sandbox.execute_one(cur, statements.on_schema(st, scratch))
        lap("apply")
        if st.kind == "create":
            conn.execute(sql.SQL("ANALYZE {}.{}").format(sql.Identifier(scratch), sql.Identifier(st.node.relation.relname)))
        after = [measure.explain(conn, query, statements.rewrite_query(parsed[query.name], moved))
                 for query in change.queries]
        lap("explain_after")
        for b, a in zip(before, after):
            figures["queries"].append({"name": b["name"], "before": b, "after": a})
        if st.kind == "create":
            built = probes.resolve_relation(conn, statements._qualify(scratch, st.index))
            figures["index_bytes"] = probes.relation_size(conn, built["oid"])
    finally:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(scratch)))
        lap("drop")
    figures["copied_rows"] = sum(t["rows"] for t in figures["tables"])
    figures["copied_bytes"] = sum(t["bytes"] for t in figures["tables"])
    figures["timings"] = timings
    figures["seconds"] = round(sum(timings.values()), 3)
    # A build on the whole table takes roughly the rehearsal's time scaled up by the sample.
    figures["build_seconds_estimate"] = round(timings["apply"] / change.sample, 2)
    return figures


def _tables(conn: psycopg.Connection, q: Queries, change: ChangeFile, target: Target) -> dict[tuple, dict]:
    """Every ordinary table the change is on or a query reads, keyed as the queries name them."""
    found: dict[tuple, dict] = {}
    if target.table_oid is not None:
        facts = probes.table_facts(conn, target.table_oid)
        names = [(None, facts["name"]), (facts["schema"], facts["name"])]
        for key in names:
            found[key] = facts
    for query in change.queries:
        for schema, name in statements.parse_query(query.sql).relations:
            rel = probes.resolve_relation(conn, statements._qualify(schema, name))
            if rel is not None and rel["relkind"] == "r":
                found[(schema, name)] = probes.table_facts(conn, rel["oid"])
    # Two keys may point at one table; copy it once.
    unique = {facts["oid"]: facts for facts in found.values()}
    return {key: unique[facts["oid"]] for key, facts in found.items()}


def copy_table(conn: psycopg.Connection, q: Queries, facts: dict[str, Any], scratch: str, sample: float) -> dict[str, Any]:
    source = sql.Identifier(facts["schema"], facts["name"])
    copy = sql.Identifier(scratch, facts["name"])
    started = time.monotonic()
    conn.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING GENERATED "
                         "INCLUDING CONSTRAINTS INCLUDING STATISTICS)").format(copy, source))
    where = sql.SQL(" TABLESAMPLE SYSTEM ({})").format(sql.Literal(sample * 100)) if sample < 1 else sql.SQL("")
    conn.execute(sql.SQL("INSERT INTO {} SELECT * FROM {}{}").format(copy, source, where))
    # Indexes after the rows: faster than maintaining them row by row.
    for index in probes.table_indexes(conn, facts["oid"]):
        if index["is_valid"]:
            conn.execute(statements.reschema_indexdef(index["indexdef"], scratch))
    conn.execute(sql.SQL("ANALYZE {}").format(copy))
    copied = probes.resolve_relation(conn, statements._qualify(scratch, facts["name"]))
    size = probes.table_facts(conn, copied["oid"])
    return {"table": facts["qualified"], "rows": size["estimated_rows"], "bytes": size["total_bytes"],
            "source_rows": facts["estimated_rows"] or facts["live_rows"] or 0,
            "seconds": round(time.monotonic() - started, 3)}
