"""The cost to writes: an index that stops HOT updates is not "improved"."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgsteady.changes import writes
from pgsteady.changes.statements import parse

from .conftest import pgsteady, write_change

QUERY = '''
[[queries]]
name = "by_counter"
sql = "SELECT id FROM hot WHERE counter = %(c)s"
params = { c = 4242 }
repeat = 5
'''


def _updates(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for i in range(n):
            conn.execute("UPDATE hot SET counter = counter + 1 WHERE id = %s", [1 + i % 4000])
        conn.execute("SELECT pg_stat_force_next_flush()")
        conn.execute("SELECT 1")


def test_verify_weighs_writes_and_calls_an_index_that_stops_hot_updates_mixed(dsn, tmp_path, worker):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE hot (id int PRIMARY KEY, counter int NOT NULL, payload text) WITH (fillfactor = 50)")
        conn.execute("INSERT INTO hot SELECT g, g, repeat('x', 50) FROM generate_series(1, 20000) g")
        conn.execute("VACUUM ANALYZE hot")
    path = write_change(tmp_path, "hot-counter", "CREATE INDEX CONCURRENTLY hot_counter_idx ON hot (counter)",
                        extra='[rehearse]\nskip = true\n', queries=QUERY)
    assert pgsteady("change", "plan", str(path), dsn=dsn).returncode == 0
    _updates(dsn, 400)  # the workload before the change: HOT, thanks to the free space on each page
    worker()
    applied = pgsteady("change", "apply", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert applied.returncode == 0, applied.stdout + applied.stderr
    _updates(dsn, 400)  # the same workload after: counter is indexed now
    r = pgsteady("change", "verify", str(path), "--json", dsn=dsn)
    figures = json.loads(r.stdout)
    w = figures["writes"]
    assert w["before"]["updates"] == 400 and w["before"]["hot_ratio"] >= 0.9, w
    assert w["after"]["updates"] >= 400 and w["after"]["hot_ratio"] <= 0.1, w
    assert w["worse"] and "HOT updates fell" in w["why"]
    assert w["before"]["wal_bytes_per_row"] and w["after"]["wal_bytes_per_row"] > w["before"]["wal_bytes_per_row"]
    assert figures["verdict"] in ("mixed", "worse") and figures["verdict"] != "improved"
    assert r.returncode == 1
    note = (tmp_path / "hot-counter.md").read_text()
    assert "## The cost to writes" in note and "HOT updates fell" in note
    text = pgsteady("change", "verify", str(path), "--watch", "0s", dsn=dsn)
    assert "Writes got worse" in text.stdout and "Writes before" in text.stdout


def test_the_columns_an_index_covers_and_the_columns_an_update_sets_are_read_with_the_parser():
    node = parse("CREATE INDEX i ON public.hot (lower(email), counter) INCLUDE (payload) WHERE NOT deleted")[0]
    assert writes.indexed_columns(node) == {"email", "counter", "payload", "deleted"}
    assert writes.updated_columns("UPDATE hot SET counter = counter + $1, seen = now() WHERE id = $2",
                                  "public", "hot") == {"counter", "seen"}
    assert writes.updated_columns("UPDATE other SET counter = $1", "public", "hot") == set()
    assert writes.updated_columns("INSERT INTO public.hot (id, counter) VALUES ($1, $2) "
                                  "ON CONFLICT (id) DO UPDATE SET counter = excluded.counter",
                                  "public", "hot") == {"counter"}
    assert writes.updated_columns("WITH x AS (UPDATE hot SET payload = $1 RETURNING id) SELECT * FROM x",
                                  "public", "hot") == {"payload"}


def test_lint_warns_that_hot_updates_stop_from_the_workloads_update_statements(dsn, tmp_path):
    with psycopg.connect(dsn, autocommit=True) as conn:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute("SELECT pg_stat_statements_reset()")
        except psycopg.Error as exc:
            pytest.skip(f"pg_stat_statements is not usable on this server: {str(exc).splitlines()[0]}")
        conn.execute("CREATE TABLE hot (id int PRIMARY KEY, counter int NOT NULL)")
        conn.execute("INSERT INTO hot SELECT g, g FROM generate_series(1, 100) g")
        for i in range(30):
            conn.execute("UPDATE hot SET counter = counter + 1 WHERE id = %s", [1 + i])
    path = write_change(tmp_path, "hot-lint", "CREATE INDEX CONCURRENTLY hot_counter_idx ON hot (counter)")
    r = pgsteady("change", "lint", str(path), dsn=dsn)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hot-updates-stop" in r.stdout and "counter" in r.stdout, r.stdout
