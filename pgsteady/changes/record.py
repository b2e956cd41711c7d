"""Step 6, the record: a row per change, a row per step, and a Markdown note.

The note is written next to the change file after every step, so the final
note exists the moment the change ships: owner, reason, expected and actual
result (before and after figures, the plan lines that changed), the exact
commands run, the files touched, the rollback and the timeline.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import psycopg

from ..errors import PgsteadyError
from ..indexes.catalog import human_bytes
from ..queries import Queries
from . import states, writes
from .files import ChangeFile, files_touched
from .targets import row, rows

ORDER = ("lint", "plan", "rehearse", "apply", "verify")


class ChangeNotFound(PgsteadyError):
    """No change with that id in the record."""


def ensure(conn: psycopg.Connection, q: Queries, change: ChangeFile, rollback: str | None) -> None:
    conn.execute(q.upsert_change, dict(id=change.id, title=change.title, owner=change.owner, reason=change.reason,
                                       file_path=str(change.path), statement=change.ddl, rollback=rollback,
                                       file_sha=change.sha))


def get(conn: psycopg.Connection, q: Queries, change_id: str) -> dict[str, Any]:
    found = row(conn, q.get_change, {"id": change_id})
    if found is None:
        raise ChangeNotFound(f"no change {change_id!r} in the record; `pgsteady change list` shows the known ones")
    found["steps"] = rows(conn, q.change_steps, {"change_id": change_id})
    return found


def sync_with_jobs(conn: psycopg.Connection, q: Queries, change_id: str) -> None:
    """Close steps whose job ended without closing them (a worker killed on the last attempt)."""
    for step in rows(conn, q.change_steps, {"change_id": change_id}):
        if step["status"] not in ("queued", "running") or step["job_id"] is None:
            continue
        job = row(conn, q.job_outcome, {"id": step["job_id"]})
        if job is None or job["state"] in ("failed", "cancelled"):
            reason = (job or {}).get("last_error") or "the job is gone"
            states.end_step(conn, q, step["id"], "failed",
                            f"job {step['job_id']} {job['state'] if job else 'missing'}: {reason}")


def done_steps(steps: list[dict[str, Any]], sha: str) -> set[str]:
    """Steps that count as done for this content of the file.

    A rollback done after an apply undoes it (and the verify of it): the
    apply has to run again.
    """
    done: set[str] = set()
    for step in steps:
        if step["status"] not in ("done", "skipped"):
            continue
        if step["step"] == "rollback":
            done -= {"apply", "verify"}
        elif step["file_sha"] == sha or step["step"] in ("apply", "verify"):
            done.add(step["step"])
    return done


# -- the note ---------------------------------------------------------------------------


def write_note(conn: psycopg.Connection, q: Queries, change: ChangeFile) -> Path:
    record = get(conn, q, change.id)
    change.note_path.write_text(render(change, record), encoding="utf-8")
    return change.note_path


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.2f} ms"


def render(change: ChangeFile, record: dict[str, Any]) -> str:
    plan, verify, rehearsal = record["plan"] or {}, record["verify"] or {}, record["rehearsal"] or {}
    out = [f"# {change.title}", "",
           f"- **change**: `{change.id}` ({change.path.name})",
           f"- **owner**: {change.owner}",
           f"- **status**: {record['status']}" + (f", verdict **{record['verdict']}**" if record["verdict"] else ""),
           "", "## Reason", "", change.reason, "", "## The change", "", "```sql", change.ddl + ";", "```", "",
           "Rollback:", "", "```sql", (record["rollback"] or "-- nothing to undo") + ";", "```", "",
           "## Expected result", ""]
    for query in change.queries:
        wants = [f"median at most {query.expect_max_ms:g} ms" if query.expect_max_ms else None,
                 f"plan uses `{query.expect_index}`" if query.expect_index else None]
        out.append(f"- `{query.name}`: " + ("; ".join(w for w in wants if w) or "no worse than before"))
    out += ["", "## Actual result", ""]
    before = {f["name"]: f for f in plan.get("queries", [])}
    after = {f["name"]: f for f in verify.get("queries", [])}
    checks = {c["name"]: c for c in verify.get("checks", [])}
    if before:
        out += ["| query | before median | before p95 | after median | after p95 | expectation |",
                "|---|---|---|---|---|---|"]
        for name, b in before.items():
            a = after.get(name, {})
            met = checks.get(name, {}).get("met")
            out.append(f"| `{name}` | {_ms(b['median_ms'])} | {_ms(b['p95_ms'])} | {_ms(a.get('median_ms'))} | "
                       f"{_ms(a.get('p95_ms'))} | {'met' if met else 'not met' if met is False else '–'} |")
        for name, b in before.items():
            if name in after and after[name]["plan_lines"] != b["plan_lines"]:
                out += ["", f"Plan lines that changed for `{name}`:", "", "```diff"]
                out += [line.rstrip() for line in difflib.unified_diff(
                    b["plan_lines"], after[name]["plan_lines"], "before", "after", lineterm="",
                    n=max(len(b["plan_lines"]), len(after[name]["plan_lines"])))
                    if not line.startswith(("@@", "---", "+++"))]
                out.append("```")
    table = plan.get("table")
    if table:
        out += ["", f"Table {table['qualified']}: {table['estimated_rows']:,} rows, {human_bytes(table['heap_bytes'])} "
                f"of data, {human_bytes(table['index_bytes'])} of indexes before the change."]
    if rehearsal:
        out.append(f"Rehearsal: copied {rehearsal['copied_rows']:,} rows ({human_bytes(rehearsal['copied_bytes'])}) "
                   f"in {rehearsal['timings']['copy']:.1f}s; the change took {rehearsal['timings']['apply']:.2f}s "
                   f"on the copy; {rehearsal['seconds']:.1f}s in all, copy dropped.")
    watch = verify.get("watch")
    if watch:
        out.append(f"Watch: {watch['summary']}")
    if verify.get("writes"):
        out += ["", "## The cost to writes", ""] + [f"- {line}" for line in writes.describe(verify["writes"])]
    from .migration_note import lines as statement_lines  # a migration: each statement, rehearsed and applied

    out += statement_lines(record)
    out += ["", "## Commands run", ""]
    out += [f"- `{s['command']}` ({s['step']}, {s['started_at']:%Y-%m-%d %H:%M:%S %Z})"
            for s in record["steps"] if s["command"]]
    out += ["", "## Files touched", ""] + [f"- {f}" for f in files_touched(change)]
    out += ["", "## Timeline", "", "| step | status | started | finished | summary |", "|---|---|---|---|---|"]
    for s in record["steps"]:
        finished = f"{s['finished_at']:%H:%M:%S}" if s["finished_at"] else ""
        summary = (s["summary"] or "").replace("|", "\\|").replace("\n", " ")
        out.append(f"| {s['step']} | {s['status']} | {s['started_at']:%Y-%m-%d %H:%M:%S} | {finished} | {summary} |")
    return "\n".join(out) + "\n"
