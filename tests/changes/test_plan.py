"""The plan step: what it captures, with HypoPG when the server has it, and without."""

from __future__ import annotations

import pytest

from pgsteady.changes import Session
from pgsteady.changes.measure import HYPOPG_MISSING, percentile

from ..helpers import scalar
from .conftest import LATEST, make_events, write_change

DDL = "CREATE INDEX CONCURRENTLY idx_events_created_at ON events (created_at DESC)"


def _has_hypopg(dsn: str) -> bool:
    return bool(scalar(dsn, "SELECT count(*) FROM pg_available_extensions WHERE name = 'hypopg'"))


def test_plan_captures_table_indexes_timings_and_an_estimate(dsn, tmp_path):
    make_events(dsn, 100_000)
    with Session(dsn, "pgsteady", write_change(tmp_path, "p", DDL, queries=LATEST), "pgsteady change plan p") as s:
        figures = s.plan()
    table = figures["table"]
    assert table["qualified"] == "public.events" and table["estimated_rows"] == 100_000
    assert [i["name"] for i in table["indexes"]] == ["events_pkey"]
    latest = figures["queries"][0]
    assert latest["runs"] == 5 and latest["p95_ms"] >= latest["median_ms"] > 0
    assert any("Seq Scan on events" in line for line in latest["plan_lines"])
    # 100,000 timestamps: about 2 MB either way (a HypoPG or a pg_stats estimate).
    assert 1 << 20 < figures["estimate"]["index_bytes"] < 4 << 20
    if not _has_hypopg(dsn):
        assert figures["hypothetical"] == {"available": False, "reason": HYPOPG_MISSING}


def test_hypopg_says_the_planner_would_use_the_new_index(dsn, tmp_path):
    if not _has_hypopg(dsn):
        pytest.skip("HypoPG is not installed on this server (the embedded PostgreSQL has none); "
                    "run with PGSTEADY_TEST_DSN pointing at a server with postgresql-NN-hypopg")
    make_events(dsn, 100_000)
    with Session(dsn, "pgsteady", write_change(tmp_path, "h", DDL, queries=LATEST), "pgsteady change plan h") as s:
        hypo = s.plan()["hypothetical"]
    assert hypo["available"] and hypo["queries"]["latest_events"]["uses_index"]
    assert hypo["queries"]["latest_events"]["cost_after"] < hypo["queries"]["latest_events"]["cost_before"] / 10
    # The extension was created in a rolled-back transaction: nothing stays behind.
    assert scalar(dsn, "SELECT count(*) FROM pg_extension WHERE extname = 'hypopg'") == 0


def test_p95_is_nearest_rank():
    assert percentile([5, 1, 3, 2, 4], 95) == 5 and percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10] * 2, 95) == 10
