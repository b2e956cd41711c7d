"""Step 5, verify: rerun the queries, compare with the plan step, watch, give a verdict.

Verdicts, with the numbers behind them:

    worse     a query's median got slower by more than 20% (and 0.1 ms), or
              the job failure rate during the watch rose above the rate before
    not met   an expectation of the change file failed (latency bound, index)
    improved  every expectation met and some query's median at least 20% faster
    unchanged every expectation met, nothing much faster or slower

    mixed     some query faster, but writes to the table got worse (HOT
              updates stopped, write statements slower: see writes.py)

``worse``, ``not met`` and ``mixed`` are negative: the command exits 1.
A write side that got worse makes the verdict ``worse`` when no read got
faster.
"""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

import psycopg

from ..queries import Queries
from ..indexes import probes
from . import measure, writes
from .files import ChangeFile
from .targets import row

SLOWER = 1.2
NOISE_MS = 0.1


def verify(change: ChangeFile, conn: psycopg.Connection, q: Queries, plan: dict[str, Any] | None,
           applied_at: datetime | None, watch_seconds: float,
           on_tick: Callable[[float, float], None] | None = None, *,
           write_baseline: dict[str, Any] | None = None,
           write_counters: Callable[[], dict[str, Any] | None] | None = None) -> dict[str, Any]:
    conn.execute("SET statement_timeout = '5min'")
    after = [measure.explain(conn, query) for query in change.queries]
    before = {f["name"]: f for f in (plan or {}).get("queries", [])}
    checks = [_check(query, a, before.get(query.name)) for query, a in zip(change.queries, after)]
    watch = _watch(conn, q, change, applied_at, watch_seconds, on_tick)
    written = writes.compare((plan or {}).get("writes"), write_baseline,
                             write_counters() if write_counters else None)
    figures = {"queries": after, "checks": checks, "watch": watch, "writes": written,
               "verified_at": datetime.now(timezone.utc).isoformat()}
    figures["verdict"], figures["why"] = _verdict(checks, watch, written)
    return figures


def _check(query, after: dict[str, Any], before: dict[str, Any] | None) -> dict[str, Any]:
    problems = []
    if query.expect_max_ms is not None and after["median_ms"] > query.expect_max_ms:
        problems.append(f"median {after['median_ms']:.2f} ms is above {query.expect_max_ms:g} ms")
    if query.expect_index and query.expect_index not in after["indexes"]:
        used = ", ".join(after["indexes"]) or "no index"
        problems.append(f"plan uses {used}, not {query.expect_index}")
    result = {"name": query.name, "met": not problems, "problems": problems, "after_ms": after["median_ms"]}
    if before:
        result["before_ms"] = before["median_ms"]
        result["speedup"] = round(before["median_ms"] / after["median_ms"], 1) if after["median_ms"] else None
        result["slower"] = after["median_ms"] > before["median_ms"] * SLOWER + NOISE_MS
        result["faster"] = after["median_ms"] * SLOWER < before["median_ms"]
        result["plan_changed"] = before["plan_lines"] != after["plan_lines"]
    return result


def _verdict(checks: list[dict[str, Any]], watch: dict[str, Any],
             written: dict[str, Any] | None = None) -> tuple[str, str]:
    """Reads and writes weighed together: faster reads bought with slower writes is ``mixed``, never ``improved``."""
    slower = [c for c in checks if c.get("slower")]
    if slower:
        c = slower[0]
        return "worse", f"{c['name']} went from {c['before_ms']:.2f} ms to {c['after_ms']:.2f} ms"
    if watch.get("failure_rate_rose"):
        return "worse", watch["summary"]
    missed = [c for c in checks if not c["met"]]
    if missed:
        return "not met", f"{missed[0]['name']}: {'; '.join(missed[0]['problems'])}"
    faster = [c for c in checks if c.get("faster")]
    reads = "; ".join(f"{c['name']} {c['before_ms']:.2f} ms -> {c['after_ms']:.2f} ms ({c['speedup']}x)"
                      for c in faster)
    if written is not None and written["worse"]:
        if faster:
            return "mixed", f"reads faster ({reads}) but writes slower: {written['why']}"
        return "worse", f"writes slower: {written['why']}"
    if faster:
        return "improved", reads
    return "unchanged", "every expectation met; no query much faster or slower"


def _watch(conn: psycopg.Connection, q: Queries, change: ChangeFile, applied_at: datetime | None,
           seconds: float, on_tick: Callable[[float, float], None] | None) -> dict[str, Any]:
    """Job failures and statement times over ``seconds``, against as long a window before the apply."""
    began = datetime.now(timezone.utc)
    statements_before = _statements(conn, q, change)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if on_tick:
            on_tick(seconds - (deadline - time.monotonic()), seconds)
        time.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
    ended = datetime.now(timezone.utc)
    span = max(ended - began, timedelta(seconds=1))
    reference = applied_at or began
    during = row(conn, q.job_failure_window, {"since": began, "until": ended})
    earlier = row(conn, q.job_failure_window, {"since": reference - span, "until": reference})
    rate = lambda w: (w["failed"] / w["finished"]) if w["finished"] else 0.0  # noqa: E731
    rose = during["finished"] >= 10 and rate(during) > rate(earlier) + 0.05
    statements = _statement_deltas(statements_before, _statements(conn, q, change))
    summary = (f"{seconds:g}s watched; jobs finished {during['finished']} ({during['failed']} failed, "
               f"{rate(during):.1%}) vs {earlier['finished']} ({earlier['failed']} failed, {rate(earlier):.1%}) "
               "in as long before the apply")
    if statements is None:
        summary += "; pg_stat_statements is not installed, statement times not watched"
    return {"seconds": seconds, "during": during, "before": earlier, "failure_rate_rose": rose,
            "statements": statements, "summary": summary}


def _statements(conn: psycopg.Connection, q: Queries, change: ChangeFile) -> dict[int, dict] | None:
    st = change.statement()  # None for a migration of several statements: every statement is watched
    table = (st.table or st.index or "") if st else ""
    found = probes.statements_naming(conn, table)  # None: not installed, or not readable
    if found is None:
        return None
    return {r["queryid"]: {**r, "query": r["query"][:200]} for r in found}


def _statement_deltas(before: dict | None, after: dict | None) -> list[dict[str, Any]] | None:
    if before is None or after is None:
        return None
    deltas = []
    for qid, a in after.items():
        b = before.get(qid, {"calls": 0, "total_exec_time": 0.0})
        calls = a["calls"] - b["calls"]
        if calls > 0:
            deltas.append({"query": a["query"], "calls": calls,
                           "mean_ms": round((a["total_exec_time"] - b["total_exec_time"]) / calls, 3)})
    return sorted(deltas, key=lambda d: -d["calls"])[:5]
