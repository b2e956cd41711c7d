"""Fixtures for the change tests: tables of real size, change files, workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from ..helpers import ROOT, start_worker, stop

WORKER_APP = "tests.changes.worker_app:app"


def make_events(dsn: str, rows: int) -> None:
    """events(id, created_at, kind, account): ``rows`` rows, newest last, analysed."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                     "created_at timestamptz NOT NULL, kind text NOT NULL, account int NOT NULL)")
        conn.execute("INSERT INTO events (created_at, kind, account) "
                     "SELECT timestamptz '2026-01-01' + g * interval '1 second', 'kind' || (g %% 20), g %% 5000 "
                     "FROM generate_series(1, %(rows)s) AS g", {"rows": rows})
        conn.execute("VACUUM ANALYZE events")


def write_change(folder: Path, name: str, ddl: str, *, extra: str = "", queries: str = "", change_id: str | None = None) -> Path:
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(f'''\
        id = "{change_id or name}"
        title = "Test change {name}"
        owner = "ops@example.com"
        reason = "Because the test says so"
        ddl = """{ddl}"""
        files = ["app/events.py"]
        watch = "0s"
        ''') + textwrap.dedent(extra) + textwrap.dedent(queries), encoding="utf-8")
    return path


LATEST = '''
[[queries]]
name = "latest_events"
sql = "SELECT id, created_at FROM events ORDER BY created_at DESC LIMIT %(n)s"
params = { n = 50 }
repeat = 5
expect_max_ms = 20
expect_index = "idx_events_created_at"
'''


def pgsteady(*args: str, dsn: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PGSTEADY_DSN": dsn, "COLUMNS": "200"}
    env.pop("PGSTEADY_APP", None)
    return subprocess.run([sys.executable, "-m", "pgsteady", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture
def worker(dsn):
    """A real worker process on the maintenance queue, with a short lease so a killed one is rescued fast."""
    procs = []

    def start():
        proc = start_worker(dsn, WORKER_APP, "--queues", "maintenance", "--lease", "2", "--poll", "0.2")
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        stop(proc, signal.SIGTERM, timeout=10)
