"""The systems measured side by side, and the virtual environments of the peers.

pgsteady and the plain-SQL reference run from this repository's .venv. Each
peer gets bench/.venvs/<peer>, made on first use with the latest release from
PyPI (``--refresh-peers`` upgrades it), so a peer's dependencies never meet
pgsteady's; the versions found there are recorded with the results.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
BENCH_DIR = ROOT / "bench"
PEERS_DIR = BENCH_DIR / "peers"
VENVS = BENCH_DIR / ".venvs"

# What each peer's venv installs: the library with the driver its docs use.
PEER_PACKAGES = {
    "procrastinate": ["procrastinate", "psycopg[binary,pool]"],
    "pgqueuer": ["pgqueuer[asyncpg]"],
}


@dataclass
class System:
    name: str
    harness: str
    python: Path
    worker_argv: Callable[[int], list[str]]
    # The lowest id in [lo, hi] of a job still waiting or running, if any.
    first_unfinished_sql: str
    max_id_sql: str
    # Jobs with id >= lo that ended as succeeded (None: the system keeps no record).
    succeeded_sql: str | None
    # Connections one idle, ready worker process holds (found by watching them).
    sessions_per_worker: int
    versions: dict = field(default_factory=dict)
    note: str = ""
    # Jobs run at once per process (pgsteady, Procrastinate) or claimed at
    # once (plain SQL); None: the suite's --concurrency. PgQueuer's batch
    # size is part of its worker command instead.
    concurrency: int | None = None
    # At most this many jobs in a drain (a peer too slow for the full count).
    max_drain: int | None = None
    # Extra environment for its harness and workers.
    env: dict = field(default_factory=dict)


def _first(table: str, unfinished: str = "") -> str:
    cond = f" AND {unfinished}" if unfinished else ""
    return f"SELECT id FROM {table} WHERE id BETWEEN %(lo)s AND %(hi)s{cond} ORDER BY id LIMIT 1"


def pgsteady(task_style: str = "async", concurrency: int | None = None) -> System:
    from importlib.metadata import version

    def argv(concurrency: int) -> list[str]:
        return [sys.executable, "-m", "pgsteady", "--app", "pgsteady_harness:app", "worker",
                "--concurrency", str(concurrency)]

    name = ("pgsteady" if task_style == "async" else "pgsteady_sync") + (f"_c{concurrency}" if concurrency else "")
    return System(
        name=name, harness="pgsteady_harness.py", python=Path(sys.executable), worker_argv=argv,
        first_unfinished_sql=_first("pgsteady.jobs", "state IN ('waiting', 'running')"),
        max_id_sql="SELECT max(id) FROM pgsteady.jobs",
        succeeded_sql="SELECT count(*) FROM pgsteady.jobs WHERE id >= %(lo)s AND state = 'succeeded'",
        sessions_per_worker=3, versions={"pgsteady": version("pgsteady") + _git_state()},
        note=("async task" if task_style == "async" else "sync task (thread pool)")
        + (f", --concurrency {concurrency}" if concurrency else ""),
        concurrency=concurrency, env={"BENCH_TASK_STYLE": task_style},
    )


def plain_sql(batch: int | None = None, style: str = "select") -> System:
    """The bare-SQL queue; ``style`` is how it claims (plainsql_harness.py):
    "select" (SELECT ... FOR UPDATE SKIP LOCKED, run, DELETE, one commit) or
    "update" (UPDATE ... RETURNING and commit, run, DELETE by id and commit)."""
    def argv(concurrency: int) -> list[str]:
        # The reference claims the same batch size pgsteady claims at once.
        return [sys.executable, str(PEERS_DIR / "plainsql_harness.py"), "worker", "--batch", str(concurrency),
                "--style", style]

    notes = {"select": "claim a batch FOR UPDATE SKIP LOCKED, run it, delete it, commit",
             "update": "claim a batch with UPDATE ... RETURNING (FOR UPDATE SKIP LOCKED) and commit, run it, "
                       "DELETE it by id and commit"}
    return System(
        name="plain_sql" + ("_update" if style == "update" else "") + (f"_b{batch}" if batch else ""),
        harness="plainsql_harness.py", python=Path(sys.executable), worker_argv=argv,
        first_unfinished_sql=_first("bench_queue"), max_id_sql="SELECT max(id) FROM bench_queue",
        succeeded_sql=None, sessions_per_worker=2, concurrency=batch, note=notes[style],
    )


def procrastinate(refresh: bool = False, max_drain: int | None = None) -> System:
    python = ensure_venv("procrastinate", refresh)
    bin_dir = python.parent

    def argv(concurrency: int) -> list[str]:
        return [str(bin_dir / "procrastinate"), "--app", "procrastinate_harness.app", "worker",
                "--concurrency", str(concurrency)]

    return System(
        name="procrastinate", harness="procrastinate_harness.py", python=python, worker_argv=argv,
        first_unfinished_sql=_first("procrastinate_jobs", "status IN ('todo', 'doing')"),
        max_id_sql="SELECT max(id) FROM procrastinate_jobs",
        succeeded_sql="SELECT count(*) FROM procrastinate_jobs WHERE id >= %(lo)s AND status = 'succeeded'",
        sessions_per_worker=2, versions=venv_versions(python, PEER_PACKAGES["procrastinate"]),
        note="procrastinate worker --concurrency C", max_drain=max_drain,
    )


def pgqueuer(batch_size: int | None = None, refresh: bool = False) -> System:
    """PgQueuer with its default batch size (10), or with ``batch_size``."""
    python = ensure_venv("pgqueuer", refresh)
    bin_dir = python.parent

    def argv(concurrency: int) -> list[str]:
        # PgQueuer's concurrency is its batch size: how many jobs it takes and
        # runs at once; C is not used.
        return [str(python), str(PEERS_DIR / "pgqueuer_harness.py"), "worker", "--batch", str(batch_size or 10)]

    return System(
        name="pgqueuer" if batch_size is None else f"pgqueuer_b{batch_size}", harness="pgqueuer_harness.py",
        python=python, worker_argv=argv,
        # A finished job leaves the pgqueuer table for pgqueuer_log.
        first_unfinished_sql=_first("pgqueuer"),
        max_id_sql="SELECT greatest((SELECT max(id) FROM pgqueuer), (SELECT max(job_id) FROM pgqueuer_log))",
        succeeded_sql="SELECT count(DISTINCT job_id) FROM pgqueuer_log WHERE job_id >= %(lo)s AND status = 'successful'",
        sessions_per_worker=1, versions=venv_versions(python, PEER_PACKAGES["pgqueuer"]),
        note=f"pgqueuer.run(batch_size={batch_size or '10, its default'})",
    )


def ensure_venv(name: str, refresh: bool = False) -> Path:
    """bench/.venvs/<name> with the peer's latest release; its python."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    if not python.exists():
        print(f"bench: creating {venv.relative_to(ROOT)} with {' '.join(PEER_PACKAGES[name])}", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        refresh = True
    if refresh:
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", *PEER_PACKAGES[name]],
                       check=True)
    return python


def venv_versions(python: Path, packages: list[str]) -> dict:
    names = [p.split("[")[0] for p in packages] + ["asyncpg", "psycopg", "uvloop"]
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    import json

    return json.loads(subprocess.run([str(python), "-c", code, *names], check=True, capture_output=True,
                                     text=True).stdout)


def _git_state() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "pgsteady"], cwd=ROOT, capture_output=True,
                               text=True).stdout.strip()
    except OSError:
        return ""
    return f" (git {rev}{', pgsteady/ modified' if dirty else ''})" if rev else ""
