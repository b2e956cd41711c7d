"""Imports that stop halfway, and jobs enqueued from a file."""

from __future__ import annotations

import json
import signal

import psycopg
import pytest

from .helpers import scalar, start_worker, states, stop, wait_until
from .test_cli import pgsteady

APP = "tests.apps.fleet_app:app"


def checkpoint(dsn: str) -> int:
    value = scalar(dsn, "SELECT checkpoint->>'position' FROM pgsteady.jobs WHERE task = 'import_rows'")
    return int(value or 0)


def test_import_of_20000_rows_killed_twice_ends_with_exactly_20000(dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE imported (n int NOT NULL)")
    r = pgsteady("--app", APP, "enqueue", "import_rows", "--args", json.dumps({"total": 20000, "pause": 0.05}), dsn=dsn)
    assert r.returncode == 0, r.stderr
    args = ("--queues", "imports", "--lease", "2", "--poll", "0.2")
    worker = start_worker(dsn, APP, *args)
    for at_least in (4000, 11000):
        wait_until(lambda: checkpoint(dsn) >= at_least, timeout=120, what=f"checkpoint past {at_least}")
        stop(worker, signal.SIGKILL)
        worker = start_worker(dsn, APP, *args)
    wait_until(lambda: states(dsn) == {"succeeded": 1}, timeout=180, what="the import to finish")
    stop(worker, signal.SIGTERM)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT count(*), count(DISTINCT n), min(n), max(n) FROM imported").fetchone() == (
            20000, 20000, 0, 19999)
        attempts = conn.execute("SELECT attempt FROM pgsteady.jobs").fetchone()[0]
    assert attempts == 3  # killed twice, resumed twice
    assert checkpoint(dsn) == 20000


def _write(path, lines: list[str]) -> str:
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_enqueue_from_file_is_idempotent_with_keys(dsn, tmp_path):
    lines = [json.dumps({"task": "hold", "args": {"seconds": 0}, "key": f"row:{i}"}) for i in range(12_000)]
    path = _write(tmp_path / "jobs.jsonl", lines)
    first = pgsteady("--app", APP, "enqueue", "--from-file", path, "--json", dsn=dsn)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout) == {"new": 12_000, "existing": 0, "committed": True, "bad": []}
    second = pgsteady("--app", APP, "enqueue", "--from-file", path, dsn=dsn)
    assert second.returncode == 0 and "0 new, 12,000 already existed" in second.stdout
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == 12_000


BAD_FILE = [
    '{"task": "hold", "args": {"seconds": 0}, "key": "a"}',
    'this is not json',
    '{"task": "holdd", "args": {}}',
    '',
    '{"task": "hold", "args": [1, 2]}',
    '{"args": {}}',
    '{"task": "hold", "args": {"seconds": 0}, "run_at": "tomorrow"}',
    '{"task": "hold", "args": {"seconds": 0}, "key": "b"}',
]


def test_bad_lines_are_reported_by_line_number_and_the_good_ones_enqueued(dsn, tmp_path):
    path = _write(tmp_path / "bad.jsonl", BAD_FILE)
    r = pgsteady("--app", APP, "enqueue", "--from-file", path, "--json", dsn=dsn)
    assert r.returncode == 1
    out = json.loads(r.stdout)
    assert (out["new"], out["committed"]) == (2, True)
    bad = {b["line"]: b["error"] for b in out["bad"]}
    assert sorted(bad) == [2, 3, 5, 6, 7]
    assert "not JSON" in bad[2] and "unknown task 'holdd'" in bad[3] and "did you mean 'hold'" in bad[3]
    assert "must be a JSON object" in bad[5] and 'missing "task"' in bad[6] and "ISO 8601" in bad[7]
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == 2


def test_all_or_nothing_enqueues_nothing_when_a_line_is_bad(dsn, tmp_path):
    path = _write(tmp_path / "bad.jsonl", BAD_FILE)
    r = pgsteady("--app", APP, "enqueue", "--from-file", path, "--all-or-nothing", dsn=dsn)
    assert r.returncode == 2
    assert f"{path}:3: unknown task 'holdd'" in r.stderr and "nothing enqueued" in r.stderr
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == 0


def test_help_explains_from_file():
    r = pgsteady("enqueue", "--help")
    assert "--all-or-nothing" in r.stdout and "line number" in r.stdout


@pytest.mark.parametrize("extra", [["hold"], ["--key", "k"]])
def test_from_file_refuses_single_job_options(dsn, tmp_path, extra):
    path = _write(tmp_path / "one.jsonl", BAD_FILE[:1])
    r = pgsteady("--app", APP, "enqueue", *extra, "--from-file", path, dsn=dsn)
    assert r.returncode == 2 and "--from-file" in r.stderr
