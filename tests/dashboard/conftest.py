"""A seeded database for the dashboard tests, and clients for it.

``seeded`` plants what an operator would look at: a live worker that leads,
a day of succeeded and failed jobs (counted by the real counter pass), a
running job, a backlog, a deploy mark, a paused queue, a schedule and a
change record; it returns the ids the tests open.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import pytest

from ..monitoring.conftest import History, history  # noqa: F401 - the fixture is used through `seeded`


@dataclass
class Seeded:
    dsn: str
    failed_id: int
    running_id: int
    waiting_id: int
    secret_id: int


def seed(h: History) -> Seeded:
    h.healthy_fleet()
    for hours in range(0, 24, 3):
        h.succeeded("mail.send", 40, queue="mail", at=h.ago(hours=hours, minutes=30), spread=timedelta(minutes=50),
                    run=0.2, wait=1.5)
    h.succeeded("render.page", 300, at=h.ago(minutes=55), spread=timedelta(minutes=50), run=2.5, wait=0.3)
    h.ended("mail.send", 12, "retry_scheduled", queue="mail", at=h.ago(minutes=40), spread=timedelta(minutes=30),
            message="SMTPError: 451 <script>alert(1)</script> try later")
    h.ended("mail.send", 3, "failed", queue="mail", at=h.ago(minutes=20), message="SMTPError: 550 mailbox unavailable")
    h.deploy("v42", at=h.ago(minutes=30), note="new mailer")
    h.waiting(25, queue="mail", due=h.ago(minutes=2))
    c = h.conn
    c.execute("UPDATE pgsteady.jobs SET errors = jsonb_build_array(jsonb_build_object("
              "'attempt', attempt, 'at', now(), 'error', 'SMTPError: 550 mailbox unavailable', "
              "'traceback', E'Traceback (most recent call last):\\n  File \"mail.py\", line 9\\nSMTPError: 550', "
              "'worker', 'w-live', 'release', 'r1')) WHERE state = 'failed'")
    failed_id = c.execute("SELECT max(id) FROM pgsteady.jobs WHERE state = 'failed'").fetchone()[0]
    running_id = c.execute(
        "INSERT INTO pgsteady.jobs (queue, task, args, state, attempt, max_attempts, lease_token, lease_expires_at, "
        "worker_id, started_at, release) VALUES ('render', 'render.page', '{\"page\": 7}', 'running', 1, 3, "
        "gen_random_uuid(), now() + interval '5 minutes', 'w-live', now(), 'r1') RETURNING id").fetchone()[0]
    secret_id = c.execute(
        "INSERT INTO pgsteady.jobs (queue, task, args, max_attempts, key) VALUES ('mail', 'mail.send', %s, 3, "
        "'user:7') RETURNING id",
        [json.dumps({"to": "ann@example.com", "password": "hunter2", "nested": {"api_key": "sk-live-123"}})]
    ).fetchone()[0]
    c.execute("INSERT INTO pgsteady.queues (queue, paused) VALUES ('imports', true)")
    c.execute("INSERT INTO pgsteady.schedules (name, cron, tz, task, queue, priority, max_attempts, args, on_missed, "
              "next_run_at, last_run_at) VALUES ('nightly-digest', '0 3 * * *', 'UTC', 'mail.digest', 'mail', 0, 3, "
              "'{}', 'once', now() + interval '5 hours', now() - interval '2 days')")
    c.execute("INSERT INTO pgsteady.changes (id, title, owner, reason, file_path, statement, rollback, file_sha) "
              "VALUES ('2026-12-01-posts-slug', 'Index posts by slug', 'ann', 'slug lookups scan posts', "
              "'changes/posts-slug.sql', 'CREATE INDEX CONCURRENTLY posts_slug_idx ON posts (slug)', "
              "'DROP INDEX CONCURRENTLY posts_slug_idx', 'abc')")
    waiting_id = c.execute("SELECT min(id) FROM pgsteady.jobs WHERE state = 'waiting'").fetchone()[0]
    # In a thread of its own: the browser tests' Playwright runs an event loop in this one.
    with ThreadPoolExecutor(1) as pool:
        pool.submit(h.count).result()
    return Seeded(h.dsn, failed_id, running_id, waiting_id, secret_id)


@pytest.fixture
def seeded(history) -> Seeded:  # noqa: F811
    return seed(history)


@pytest.fixture
def client_for():
    """A Starlette TestClient for create_app(**options); closed (and its pool) after the test."""
    from starlette.testclient import TestClient

    from pgsteady.dashboard import create_app

    made = []

    def make(dsn: str, **options):
        app = create_app(dsn, **options)
        client = TestClient(app, base_url="http://127.0.0.1:8188", raise_server_exceptions=False)
        made.append((client, app))
        return client

    yield make
    for client, app in made:
        client.close()
        app.dashboard.close()


@pytest.fixture
def serve_dashboard():
    """Serve create_app(**options) with uvicorn on 127.0.0.1 and a free port; yields its base URL."""
    import socket
    import threading

    import uvicorn

    from pgsteady.dashboard import create_app

    running = []

    def start(dsn: str, **options) -> str:
        app = create_app(dsn, **options)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        running.append((server, thread, app, sock))
        from ..helpers import wait_until
        wait_until(lambda: server.started, timeout=20, what="the dashboard to start")
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    yield start
    for server, thread, app, sock in running:
        server.should_exit = True
        thread.join(10)
        app.dashboard.close()
        sock.close()
