"""Fleet-wide queue limits and pause, enforced by the database."""

from __future__ import annotations

import signal
import threading
import time

import psycopg

from pgsteady import App

from .helpers import scalar, start_worker, states, stop, wait_until
from .test_cli import pgsteady

APP = "tests.apps.fleet_app:app"


def enqueue_holds(dsn: str, n: int, seconds: float) -> None:
    from tests.apps.fleet_app import app as fleet

    app = App(dsn=dsn)
    app.tasks = fleet.tasks
    app.enqueue_many([("hold", {"seconds": seconds}) for _ in range(n)])
    app.close()


class Sampler:
    """Samples a query from the database while workers run."""

    def __init__(self, dsn: str, query: str) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(dsn, query), daemon=True)
        self._thread.start()

    def _run(self, dsn: str, query: str) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            while not self._stop.is_set():
                self.samples.append(conn.execute(query).fetchone()[0])
                self._stop.wait(0.01)

    def stop(self) -> list[int]:
        self._stop.set()
        self._thread.join()
        return self.samples


def test_max_running_2_holds_with_three_workers_of_concurrency_10(dsn):
    r = pgsteady("queues", "limit", "limited", "--max-running", "2", dsn=dsn)
    assert r.returncode == 0, r.stderr
    enqueue_holds(dsn, 24, 0.2)
    sampler = Sampler(dsn, "SELECT count(*) FROM pgsteady.jobs WHERE queue = 'limited' AND state = 'running'")
    workers = [start_worker(dsn, APP, "--concurrency", "10", "--poll", "0.1") for _ in range(3)]
    try:
        wait_until(lambda: states(dsn) == {"succeeded": 24}, timeout=120, what="all jobs done")
    finally:
        samples = sampler.stop()
        for w in workers:
            stop(w, signal.SIGTERM)
    assert len(samples) > 50
    assert max(samples) == 2  # reached, never passed
    ran_on = scalar(dsn, "SELECT count(DISTINCT worker_id) FROM pgsteady.jobs")
    assert ran_on >= 2  # the limit held across workers, not because one worker did everything


def test_max_per_second_holds_across_workers(dsn):
    assert pgsteady("queues", "limit", "limited", "--max-per-second", "4", dsn=dsn).returncode == 0
    enqueue_holds(dsn, 20, 0)
    workers = [start_worker(dsn, APP, "--concurrency", "10", "--poll", "0.05") for _ in range(3)]
    try:
        wait_until(lambda: states(dsn) == {"succeeded": 20}, timeout=120, what="all jobs done")
    finally:
        for w in workers:
            stop(w, signal.SIGTERM)
    with psycopg.connect(dsn) as conn:
        per_second = [n for (n,) in conn.execute(
            "SELECT count(*) FROM pgsteady.jobs GROUP BY date_trunc('second', started_at)")]
    assert max(per_second) <= 4 and sum(per_second) == 20


def test_paused_queue_waits_until_resumed(dsn):
    assert pgsteady("queues", "pause", "limited", dsn=dsn).returncode == 0
    enqueue_holds(dsn, 3, 0)
    worker = start_worker(dsn, APP, "--poll", "0.1")
    try:
        # The worker polls many times and must claim nothing while paused.
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pgsteady.workers") == 1, what="worker up")
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            assert states(dsn) == {"waiting": 3}
        listed = pgsteady("queues", "list", dsn=dsn).stdout
        assert "limited" in listed and "paused" in listed
        assert pgsteady("queues", "resume", "limited", dsn=dsn).returncode == 0
        wait_until(lambda: states(dsn) == {"succeeded": 3}, what="jobs run after resume")
    finally:
        stop(worker, signal.SIGTERM)


def test_limit_command_rejects_nonsense(dsn):
    r = pgsteady("queues", "limit", "q", dsn=dsn)
    assert r.returncode == 2 and "--max-running" in r.stderr
    r = pgsteady("queues", "limit", "q", "--max-running", "0", dsn=dsn)
    assert r.returncode == 2
