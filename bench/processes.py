"""Running harnesses and workers as child processes of the one benchmark
process, and telling when a worker is ready or a drain is finished."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from .systems import PEERS_DIR, ROOT, System


class HarnessError(RuntimeError):
    pass


def environment(dsn: str, **extra: str) -> dict:
    """BENCH_DSN for our harnesses, the PG* variables for drivers and CLIs
    that read those (asyncpg, `pgq install`), and the harness folder on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "BENCH_"))}
    params = conninfo_to_dict(dsn)
    for key, var in (("host", "PGHOST"), ("port", "PGPORT"), ("user", "PGUSER"), ("dbname", "PGDATABASE"),
                     ("password", "PGPASSWORD")):
        if params.get(key):
            env[var] = str(params[key])
    env.update(BENCH_DSN=dsn, PGSTEADY_DSN=dsn, PGSTEADY_RELEASE="bench",
               PYTHONPATH=os.pathsep.join([str(PEERS_DIR), str(ROOT)]), **extra)
    return env


def harness(system: System, dsn: str, *args: str, timeout: float = 900, **env: str) -> dict:
    """Run one harness command to its end; its JSON answer."""
    proc = subprocess.run([str(system.python), str(PEERS_DIR / system.harness), *args],
                          env=environment(dsn, **system.env, **env),
                          capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    if proc.returncode != 0:
        raise HarnessError(f"{system.name} {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    return json.loads(lines[-1]) if lines else {}


def harness_answer_time(system: System, dsn: str, *args: str, timeout: float = 900) -> tuple[dict, float]:
    """Run a harness command and note the moment its answer line arrives
    (for an enqueue: the moment its jobs are committed and visible)."""
    proc = subprocess.Popen([str(system.python), str(PEERS_DIR / system.harness), *args],
                            env=environment(dsn, **system.env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    line = proc.stdout.readline()
    at = time.monotonic()
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    if proc.returncode != 0 or not line.startswith("{"):
        raise HarnessError(f"{system.name} {' '.join(args)} failed ({proc.returncode}): {err.strip()[-2000:]}")
    return json.loads(line), at


class Workers:
    """``count`` worker processes of a system, stopped (SIGTERM, then SIGKILL)
    on exit. Their output goes to a log file, shown when something fails."""

    def __init__(self, system: System, dsn: str, count: int, concurrency: int, log_dir: Path, **env: str) -> None:
        self.system, self.dsn, self.count = system, dsn, count
        self.argv = system.worker_argv(concurrency)
        self.env = environment(dsn, **system.env, **env)
        self.log_path = log_dir / f"{system.name}-workers-{os.getpid()}-{time.monotonic_ns()}.log"
        self.procs: list[subprocess.Popen] = []

    def __enter__(self) -> "Workers":
        self._log = open(self.log_path, "w")
        for _ in range(self.count):
            self.procs.append(subprocess.Popen(self.argv, env=self.env, cwd=ROOT, stdout=self._log,
                                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
        return self

    def __exit__(self, *exc) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._log.close()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def check_alive(self) -> None:
        dead = [p.returncode for p in self.procs if p.poll() is not None]
        if dead:
            raise HarnessError(f"{self.system.name} worker exited ({dead}):\n{self.output()}")

    def wait_ready(self, timeout: float = 60) -> None:
        """Until every process has opened its connections, then one warm-up
        job through the queue: the workers are up, connected and idle."""
        want = self.system.sessions_per_worker * self.count
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            while True:
                self.check_alive()
                have = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                    "AND pid <> pg_backend_pid()").fetchone()[0]
                if have >= want:
                    break
                if time.monotonic() > deadline:
                    raise HarnessError(f"{self.system.name} workers opened {have} of {want} sessions in {timeout}s:\n"
                                       f"{self.output()}")
                time.sleep(0.05)
        time.sleep(0.2)
        lo = next_id(self.system, self.dsn)
        harness(self.system, self.dsn, "enqueue", "--mode", "one", "-n", "1")
        wait_drained(self.system, self.dsn, lo, None, timeout=timeout, workers=self)
        time.sleep(0.1)


def next_id(system: System, dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return (conn.execute(system.max_id_sql).fetchone()[0] or 0) + 1


def wait_drained(system: System, dsn: str, lo: int, hi: int | None, *, timeout: float,
                 workers: Workers | None = None, interval: float = 0.02) -> float:
    """Until no job with an id in [lo, hi] is waiting or running; the moment
    it was seen. Finished is final for a no-op job, so each poll starts at
    the lowest unfinished id of the one before and reads only the rows that
    finished since: polling stays cheap however many jobs there are."""
    hi = hi if hi is not None else 2**62
    deadline = time.monotonic() + timeout
    with psycopg.connect(dsn, autocommit=True) as conn:
        while True:
            first = conn.execute(system.first_unfinished_sql, {"lo": lo, "hi": hi}).fetchone()
            if first is None or first[0] is None:
                return time.monotonic()
            lo = first[0]
            if time.monotonic() > deadline:
                out = workers.output() if workers else ""
                raise HarnessError(f"{system.name}: jobs still unfinished after {timeout}s (first id {lo}):\n{out}")
            if workers is not None:
                workers.check_alive()
            time.sleep(interval)
