"""The whole flow on a table of a million rows, through the command line."""

from __future__ import annotations

import json
import re

from ..helpers import scalar
from .conftest import LATEST, make_events, pgsteady, write_change

DDL = "CREATE INDEX CONCURRENTLY idx_events_created_at ON events (created_at DESC)"


def test_latest_rows_query_moves_from_seq_scan_and_sort_to_index_scan(dsn, tmp_path, worker):
    make_events(dsn, 1_000_000)
    path = write_change(tmp_path, "2026-11-28-events-created-at", DDL, queries=LATEST)

    lint = pgsteady("change", "lint", str(path), dsn=dsn)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert "DROP INDEX CONCURRENTLY IF EXISTS public.idx_events_created_at" in lint.stdout

    plan = pgsteady("change", "plan", str(path), "--json", dsn=dsn)
    assert plan.returncode == 0, plan.stderr
    before = json.loads(plan.stdout)
    assert before["table"]["estimated_rows"] > 900_000
    lines = before["queries"][0]["plan_lines"]
    assert any("Seq Scan on events" in line for line in lines) and any("Sort" in line for line in lines), lines

    rehearse = pgsteady("change", "rehearse", str(path), "--json", dsn=dsn)
    assert rehearse.returncode == 0, rehearse.stderr
    rehearsal = json.loads(rehearse.stdout)
    assert rehearsal["copied_rows"] > 900_000
    assert any("Index Scan using idx_events_created_at" in line
               for line in rehearsal["queries"][0]["after"]["plan_lines"])
    assert scalar(dsn, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgsteady_rehearsal%%'") == 0

    worker()
    apply = pgsteady("change", "apply", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert apply.returncode == 0, apply.stdout + apply.stderr
    assert "built public.idx_events_created_at" in apply.stdout
    assert scalar(dsn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'idx_events_created_at'::regclass")

    verify = pgsteady("change", "verify", str(path), "--watch", "0s", "--json", dsn=dsn)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    after = json.loads(verify.stdout)
    assert after["verdict"] == "improved", after["why"]
    assert any("Index Scan using idx_events_created_at on events" in line
               for line in after["queries"][0]["plan_lines"])

    # The record: a row with every step, and the note next to the file with both plans.
    shown = json.loads(pgsteady("change", "show", "2026-11-28-events-created-at", "--json", dsn=dsn).stdout)
    assert [s["step"] for s in shown["steps"]] == ["lint", "plan", "rehearse", "apply", "verify"]
    assert all(s["status"] == "done" for s in shown["steps"])
    assert shown["steps"][3]["command"] == f"pgsteady change apply {path} --wait"
    note = path.with_suffix(".md").read_text()
    for text in ("ops@example.com", "Because the test says so", "DROP INDEX CONCURRENTLY IF EXISTS",
                 "app/events.py", f"pgsteady change plan {path}", "| verify | done"):
        assert text in note, (text, note)
    for pattern in (r"^-\s+Sort \(key: created_at DESC\)$", r"^-\s+Seq Scan on events$",
                    r"^\+\s+Index Scan using idx_events_created_at on events$"):
        assert re.search(pattern, note, re.MULTILINE), (pattern, note)
    print(note)  # the figures of the million-row flow, for the report

    listed = json.loads(pgsteady("change", "list", "--json", dsn=dsn).stdout)
    assert listed[0]["id"] == "2026-11-28-events-created-at" and listed[0]["verdict"] == "improved"

    # Applying again: nothing to do. Rolling back drops the index, recorded too.
    again = pgsteady("change", "apply", str(path), "--wait", "--json", dsn=dsn)
    assert again.returncode == 0 and json.loads(again.stdout)["created"] is False, again.stderr
    back = pgsteady("change", "rollback", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert back.returncode == 0, back.stdout + back.stderr
    assert scalar(dsn, "SELECT to_regclass('idx_events_created_at')") is None
    shown = json.loads(pgsteady("change", "show", "2026-11-28-events-created-at", "--json", dsn=dsn).stdout)
    assert shown["status"] == "rolled back" and shown["steps"][-1]["step"] == "rollback"


def test_apply_after_plan_continues_from_the_last_step_done(dsn, tmp_path, worker):
    make_events(dsn, 20_000)
    path = write_change(tmp_path, "continue", DDL, queries=LATEST)
    assert pgsteady("change", "plan", str(path), dsn=dsn).returncode == 0
    worker()
    r = pgsteady("change", "apply", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert r.returncode == 0, r.stdout + r.stderr
    steps = json.loads(pgsteady("change", "show", "continue", "--json", dsn=dsn).stdout)["steps"]
    assert [(s["step"], s["command"].split()[2]) for s in steps] == [
        ("lint", "plan"), ("plan", "plan"), ("rehearse", "apply"), ("apply", "apply")]

