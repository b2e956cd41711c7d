"""Small helpers shared by the tests: waiting on database conditions and
running worker processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, TypeVar

import psycopg

ROOT = Path(__file__).resolve().parent.parent
T = TypeVar("T")


def wait_until(check: Callable[[], T], timeout: float = 30.0, interval: float = 0.05, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy; fail after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {value!r})")
        time.sleep(interval)


def scalar(dsn: str, query: str, params=None):
    """The first column of the first row, None when there is no row."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(query, params).fetchone()
    return None if row is None else row[0]


def states(dsn: str, schema: str = "pgsteady") -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(f"SELECT state::text, count(*) FROM {schema}.jobs GROUP BY 1").fetchall()
    return dict(rows)


def start_worker(dsn: str, app: str, *args: str, env: dict | None = None) -> subprocess.Popen:
    """A real `pgsteady worker` process; its output lines collect in ``proc.lines``."""
    full_env = {**os.environ, "PGSTEADY_DSN": dsn, "PYTHONPATH": str(ROOT), **(env or {})}
    proc = subprocess.Popen(
        [sys.executable, "-m", "pgsteady", "--app", app, "worker", *args],
        cwd=ROOT, env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )
    proc.lines = []
    proc.reader = threading.Thread(target=lambda: proc.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    proc.reader.start()
    return proc


def wait_for_output(proc: subprocess.Popen, text: str, timeout: float = 30.0) -> None:
    wait_until(lambda: any(text in line for line in list(proc.lines)), timeout=timeout, what=f"output {text!r}")


def stop(proc: subprocess.Popen, sig: int = signal.SIGKILL, timeout: float = 30.0) -> str:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.reader.join(5)
    return "".join(proc.lines)
