"""What must hold after every fault, checked on the server itself.

- no job lost: every job ends succeeded;
- no transactional effect twice: each counter moved once, one effect row;
- nothing ``running`` past its lease plus the rescue interval, counted from
  when the server was last able to rescue it (it cannot while it is down);
- the fault visible in ``status`` while it lasts (asserted by each test).
"""

from __future__ import annotations

import threading
import time

import psycopg

from pgsteady import App


# A job past its lease is rescued at the leader's next rescuer pass (every
# rescue interval). When the leader went with the fault, its own lease (two
# thirds of the worker's) ended no later than the job's, and a follower takes
# over within a sixth of the lease, then rescues at once. Scheduling on a
# loaded CI machine adds the slack.
SLACK = 2.0


def plant(dsn: str, effects: int, naps: int = 0, hold: float = 0.0, nap: float = 0.0, failing: int = 0) -> None:
    """Counters 1..effects, one effect job each, ``naps`` nap jobs, and
    ``failing`` jobs whose first attempt fails after ``nap`` seconds."""
    from ..apps.faults_app import app as fleet_app

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO counters (n) SELECT generate_series(1, %s)", [effects])
    app = App(dsn=dsn)
    app.tasks.update(fleet_app.tasks)
    try:
        app.enqueue_many([("fail_once", {"seconds": nap}) for _ in range(failing)]  # claimed first
                         + [("effect", {"n": n, "hold": hold}) for n in range(1, effects + 1)]
                         + [("nap", {"seconds": nap}) for _ in range(naps)])
    finally:
        app.close()


def running(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pgsteady.jobs WHERE state = 'running'").fetchone()[0]


def settle(dsn: str, total: int, timeout: float = 90.0) -> None:
    """Until every job succeeded; the failure names what is left, and how."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(dsn, autocommit=True) as conn:
            left = conn.execute(
                "SELECT state::text, count(*), extract(epoch FROM max(now() - lease_expires_at))::int "
                "FROM pgsteady.jobs WHERE state <> 'succeeded' GROUP BY 1").fetchall()
        if not left:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not all {total} jobs succeeded in {timeout}s; left (state, count, "
                                 f"seconds past lease): {left}")
        time.sleep(0.2)


def assert_exactly_once(dsn: str, effects: int, total: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        states = dict(conn.execute("SELECT state::text, count(*) FROM pgsteady.jobs GROUP BY 1").fetchall())
        assert states == {"succeeded": total}, states  # no job lost
        twice = conn.execute("SELECT n, v FROM counters WHERE v <> 1 ORDER BY n").fetchall()
        assert twice == [], f"counters moved other than once: {twice}"
        rows = conn.execute("SELECT count(*), count(DISTINCT n) FROM effects").fetchone()
        assert rows == (effects, effects), f"effect rows {rows}, expected {effects} distinct"


class Overdue:
    """Samples, on the server, how long any running job has been past its
    lease since the server could last do something about it."""

    QUERY = ("SELECT coalesce(extract(epoch FROM max(now() - greatest(lease_expires_at, "
             "pg_postmaster_start_time(), %(since)s::timestamptz))), 0)::float8 "
             "FROM pgsteady.jobs WHERE state = 'running'")

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.worst = 0.0
        self.since = "-infinity"  # when the fleet could last act (a pooler may block it with the server up)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def blind(self) -> None:
        """Nobody can act now (the pooler in front of every worker is paused)."""
        self.since = "infinity"

    def sighted(self) -> None:
        """They can again, from now on."""
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            self.since = conn.execute("SELECT now()::text").fetchone()[0]

    def __enter__(self) -> "Overdue":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.dsn, autocommit=True, connect_timeout=2) as conn:
                    while not self._stop.is_set():
                        self.worst = max(self.worst, conn.execute(self.QUERY, dict(since=self.since)).fetchone()[0])
                        self._stop.wait(0.1)
            except psycopg.Error:
                self._stop.wait(0.2)  # the server is down: nobody can rescue, nothing to measure

    def assert_within(self, lease: float, rescue_interval: float) -> None:
        bound = max(rescue_interval, lease / 6) + SLACK
        assert self.worst <= bound, f"a job stayed running {self.worst:.1f}s past its lease (bound {bound:.1f}s)"
