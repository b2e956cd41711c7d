"""`pgsteady demo`: an import of synthetic posts, end to end.

It shows the three promises of the job core on whatever database is
configured (the embedded one by default): enqueueing is idempotent (the same
batch enqueued twice creates nothing the second time), failures are retried
and recorded, and a transactional task writes each post exactly once.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .app import App
from .database import connect
from .migrations import migrate
from .tasks import Context, Retry
from .worker import Worker

POSTS_TABLE = "demo_posts"
TOPICS = ("background jobs", "postgresql indexing", "cdn cache rules", "import scripts", "monitoring")

app = App(release="demo")


@app.task(name="demo.import_post", queue="imports", transactional=True, max_attempts=5, retry=Retry(base=0.05, cap=1.0))
def import_post(ctx: Context, batch: str, post_id: int, title: str, body: str, flaky: bool) -> None:
    """Store one post. Flaky posts fail on their first attempt, as a feed that
    times out now and then would, and succeed when retried."""
    if flaky and ctx.attempt == 1:
        raise ConnectionError(f"feed timed out while fetching post {post_id}")
    ctx.conn.execute(
        sql.SQL("INSERT INTO {} (batch, post_id, title, body) VALUES (%s, %s, %s, %s)").format(sql.Identifier(POSTS_TABLE)),
        [batch, post_id, title, body],
    )


def synthetic_posts(n: int, seed: int = 12395) -> list[dict]:
    rng = random.Random(seed)
    posts = []
    for i in range(1, n + 1):
        topic = rng.choice(TOPICS)
        posts.append({
            "post_id": i,
            "title": f"Handling {topic} behind a CDN, part {i}",
            "body": f"A calm, readable note on {topic}: measure first, change carefully, document the result. ({rng.random():.6f})",
            "flaky": i % 50 == 0,
        })
    return posts


@dataclass
class Summary:
    dsn_name: str
    batch: str
    enqueued: int
    already_there: int
    second_enqueue_new: int
    succeeded: int
    failed: int
    retries: int
    rows: int
    duplicate_rows: int
    seconds: float

    @property
    def per_second(self) -> float:
        return self.succeeded / self.seconds if self.seconds else 0.0


def prepare(dsn: str, schema: str) -> None:
    migrate(dsn, schema)
    with connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (batch text NOT NULL, post_id integer NOT NULL, title text NOT NULL,"
            " body text NOT NULL, imported_at timestamptz NOT NULL DEFAULT now())").format(sql.Identifier(POSTS_TABLE)))


def counts(conn: psycopg.Connection, schema: str, batch: str) -> tuple[int, int, int]:
    """(succeeded, failed, retries) for the batch's jobs."""
    return conn.execute(sql.SQL(
        "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*) FILTER (WHERE state = 'failed'),"
        " coalesce(sum(attempt - 1) FILTER (WHERE state = 'succeeded'), 0)"
        " FROM {}.jobs WHERE key LIKE %s").format(sql.Identifier(schema)), [f"demo:{batch}:%"]).fetchone()


def run(n: int = 1000, *, concurrency: int = 10, on_progress=None) -> Summary:
    """Enqueue n import jobs, run a worker until they are done, and check the result.
    ``on_progress(done, total)`` is called a few times a second."""
    dsn = app.dsn
    prepare(dsn, app.schema)
    batch = time.strftime("%Y%m%dT%H%M%S") + f"-{random.randrange(16**4):04x}"
    jobs = [{"task": import_post.name, "args": {"batch": batch, **p}, "key": f"demo:{batch}:post:{p['post_id']}"}
            for p in synthetic_posts(n)]
    started = time.monotonic()
    refs = app.enqueue_many(jobs)
    again = app.enqueue_many(jobs)  # the same batch again: idempotency keys make this a no-op

    async def work() -> None:
        worker = Worker(app, queues=["imports"], concurrency=concurrency, lease=10, poll_interval=0.2)
        runner = asyncio.create_task(worker.run())
        with connect(dsn, autocommit=True) as conn:
            while True:
                done, failed, _ = counts(conn, app.schema, batch)
                if on_progress:
                    on_progress(done + failed, n)
                if done + failed >= n or runner.done():
                    break
                await asyncio.sleep(0.2)
        worker.stop()
        await runner

    asyncio.run(work())
    elapsed = time.monotonic() - started
    with connect(dsn, autocommit=True) as conn:
        succeeded, failed, retries = counts(conn, app.schema, batch)
        rows, distinct = conn.execute(sql.SQL("SELECT count(*), count(DISTINCT post_id) FROM {} WHERE batch = %s")
                                      .format(sql.Identifier(POSTS_TABLE)), [batch]).fetchone()
    app.close()
    from .database import describe

    return Summary(describe(dsn), batch, sum(r.created for r in refs), sum(not r.created for r in refs),
                   sum(r.created for r in again), succeeded, failed, retries, rows, rows - distinct, elapsed)
