"""Real `pgsteady worker` processes of the fault suite's App."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

from ..helpers import ROOT

APP = "tests.apps.faults_app:app"


def start(dsn: str, *args: str, lease: float, netns=None, env: dict | None = None) -> subprocess.Popen:
    """A worker on ``dsn`` (inside ``netns`` when given); its output lines in ``proc.lines``."""
    full_env = {**os.environ, "PGSTEADY_DSN": dsn, "PYTHONPATH": str(ROOT), **(env or {})}
    if "PGSTEADY_POOLER" not in (env or {}):
        full_env.pop("PGSTEADY_POOLER", None)  # detected, unless the test says otherwise
    cmd = [sys.executable, "-m", "pgsteady", "--app", APP, "worker", "--lease", str(lease), "-v", *args]
    proc = subprocess.Popen(netns.command(cmd) if netns else cmd, cwd=ROOT, env=full_env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True)
    proc.lines = []
    proc.reader = threading.Thread(target=lambda: proc.lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    proc.reader.start()
    return proc


def output(proc: subprocess.Popen) -> str:
    return "".join(list(proc.lines))
