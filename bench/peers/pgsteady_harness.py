"""pgsteady in the benchmark: the App, its no-op task, and the harness commands.

The worker side is the real command line, run by the orchestrator as
``python -m pgsteady --app pgsteady_harness:app worker --concurrency C``,
with every safety on: leases, fencing, failure history, and the release
recorded with every attempt (PGSTEADY_RELEASE=bench).
"""

from __future__ import annotations

import os
import time

import common

from pgsteady import App

app = App(dsn=os.environ.get("BENCH_DSN"), release=os.environ.get("PGSTEADY_RELEASE", "bench"))

# Async, like the peers' tasks: PgQueuer accepts only async entrypoints and
# Procrastinate recommends them, so the same kind of function runs everywhere.
# BENCH_TASK_STYLE=sync measures pgsteady with a plain def (run in its thread pool).
if os.environ.get("BENCH_TASK_STYLE") == "sync":
    @app.task(name="noop")
    def noop(i: int = 0, t: float | None = None) -> None:
        common.started(t)
else:
    @app.task(name="noop")
    async def noop(i: int = 0, t: float | None = None) -> None:
        common.started(t)


def main() -> None:
    a = common.parse()
    if a.command == "setup":
        from pgsteady.migrations import migrate

        migrate(common.dsn())
        common.emit(ok=True)
    elif a.command == "enqueue":
        app.pool()  # connect before the clock starts, as a running web app would have
        jobs = [dict(task="noop", args=common.job_args(i), key=f"{a.keys}:{i}" if a.keys else None)
                for i in range(a.n)]
        start = time.perf_counter()
        if a.mode == "one":
            for job in jobs:
                app.enqueue(job["task"], job["args"], key=job["key"])
        else:
            for part in common.chunks(jobs, a.chunk):
                app.enqueue_many(part)
        common.emit(seconds=time.perf_counter() - start, n=a.n)
    elif a.command == "latency":
        app.pool()
        common.latency_probes(a.n, a.gap, lambda args: app.enqueue("noop", args))
    else:
        raise SystemExit("pgsteady runs its own worker command")
    app.close()


if __name__ == "__main__":
    main()
