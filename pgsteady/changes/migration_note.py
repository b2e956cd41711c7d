"""The part of the Markdown note that only a migration has: each statement, rehearsed and applied."""

from __future__ import annotations

from typing import Any

from .locks import blocks


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def lines(record: dict[str, Any]) -> list[str]:
    """Rows of the statements table, empty for an index change."""
    rehearsed = {s["index"]: s for s in (record["rehearsal"] or {}).get("statements", [])}
    planned = (record["plan"] or {}).get("statements") or [
        {"index": s["index"], "line": s["line"], "sql": s["statement"]} for s in rehearsed.values()]
    if not planned and not rehearsed:
        return []
    applied: dict[str, dict[str, Any]] = {}
    for step in record["steps"]:
        if step["step"] == "apply":
            for s in (step["details"] or {}).get("statements", []):
                applied[s["sql"]] = s
    out = ["", "## Statements", "",
           "| # | line | statement | on the copy | strongest lock, held | blocks | rewrote | applied |",
           "|---|---|---|---|---|---|---|---|"]
    for st in planned:
        r = rehearsed.get(st["index"], {})
        a = applied.get(st["sql"])
        if r.get("status") == "done":
            copy = f"{r['seconds']:.3f}s"
            lock = f"{r['strongest'] or 'none'}, {r['held_seconds']:.3f}s"
            rewrote = ", ".join(r["rewrote"]) or "no"
            blocked = blocks(r["strongest"])
        else:
            copy = r.get("status", "–") + (f": {r.get('why') or r.get('error')}" if r else "")
            lock = blocked = rewrote = "–"
        done = "–" if a is None else (f"{a['status']} in {a.get('seconds', 0):.3f}s, {a['attempts']} attempt(s)"
                                      + (f", {a['lock_timeouts']} lock timeout(s)" if a["lock_timeouts"] else "")
                                      + (f": {a['error']}" if a.get("error") else ""))
        out.append(f"| {st['index']} | {st['line']} | `{_cell(' '.join(st['sql'].split())[:90])}` | {_cell(copy)} | "
                   f"{_cell(lock)} | {_cell(blocked)} | {_cell(rewrote)} | {_cell(done)} |")
    return out
