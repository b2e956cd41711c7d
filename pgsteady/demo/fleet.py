"""Worker processes for the demo: real `pgsteady worker` processes that the
demo starts, kills with SIGKILL, and stops, each logging to a file in the
demo folder so that "watch the logs after release" has logs to watch."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

QUEUES = "imports,site,maintenance"
LEASE = 2.0


class WorkerProcess:
    def __init__(self, dsn: str, schema: str, log: Path) -> None:
        self.log = log
        env = {**os.environ, "PGSTEADY_DSN": dsn, "PGSTEADY_SCHEMA": schema, "PGSTEADY_APP": "pgsteady.demo.tasks:app"}
        self._out = log.open("ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pgsteady", "worker", "--queues", QUEUES, "--lease", str(LEASE), "--poll", "0.2",
             "--grace", "5", "-v"],
            env=env, stdin=subprocess.DEVNULL, stdout=self._out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        """SIGKILL: no handler runs, no lease is handed back, nothing is flushed."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self._out.close()

    def stop(self, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._out.close()
        return self.proc.returncode

    def log_lines(self, since: int = 0) -> list[str]:
        """Lines of the log from byte offset ``since``."""
        with self.log.open("rb") as f:
            f.seek(since)
            return f.read().decode("utf-8", "replace").splitlines()

    def log_size(self) -> int:
        return self.log.stat().st_size if self.log.exists() else 0
