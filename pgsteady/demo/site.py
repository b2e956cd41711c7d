"""The demo's content site: its schema, a feed of posts, and a month of page views.

The posts carry the meta of the field note's own page (topic, tags, summary,
scores, revision), and the history is generated inside PostgreSQL in chunks,
so a million rows take seconds and the caller can show progress.
"""

from __future__ import annotations

import functools
import json
import random
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import psycopg

from ..queries import parse

AUTHORS = 40
TOPICS = ("handling background jobs", "postgresql indexing", "cdn cache rules", "import scripts", "monitoring",
          "security hardening")
TAGS = ("postgresql", "indexes", "sql", "database", "cdn", "jobs", "cron", "imports", "logs", "vacuum")
HISTORY_CHUNK = 100_000


@functools.cache
def queries() -> SimpleNamespace:
    return SimpleNamespace(**parse((resources.files("pgsteady.demo") / "site.sql").read_text()))


def create(conn: psycopg.Connection) -> None:
    """The site's tables, afresh (the demo owns the demo_site schema)."""
    q = queries()
    with conn.transaction():
        for name in ("reset_site", "create_schema", "create_authors", "create_posts", "create_posts_author_index",
                     "create_events", "create_sitemaps"):
            conn.execute(getattr(q, name))
        conn.execute(q.fill_authors, {"n": AUTHORS})


def fill_history(conn: psycopg.Connection, events: int, posts: int,
                 on_progress: Callable[[int], None] | None = None) -> None:
    """``events`` page views spread over the last 30 days, in random order."""
    q = queries()
    now = datetime.now(timezone.utc)
    for first in range(1, events + 1, HISTORY_CHUNK):
        last = min(first + HISTORY_CHUNK - 1, events)
        conn.execute(q.fill_events, {"now": now, "first": first, "last": last, "posts": posts})
        if on_progress:
            on_progress(last)
    conn.execute(q.analyze_site)


def post(i: int, rng: random.Random) -> dict:
    topic = rng.choice(TOPICS)
    return {
        "source_id": f"alphanode-{i:06d}",
        "slug": f"{topic.replace(' ', '-')}-{i}",
        "author_id": 1 + i % AUTHORS,
        "title": f"Building a safer workflow for {topic}, part {i}",
        "topic": topic,
        "tags": rng.sample(TAGS, 3),
        "summary": f"A calm, readable note on {topic}: measure first, change carefully, document the result.",
        "scores": {"quality": rng.randint(60, 99), "freshness": rng.randint(60, 99),
                   "depth": rng.randint(60, 99), "clarity": rng.randint(60, 99)},
        "revision": {"status": "reviewed", "version": f"1.{rng.randint(0, 9)}.0", "last_reviewed": "2026-01-19"},
    }


def write_feed(path: Path, n: int, seed: int = 12395) -> Path:
    """A JSON-lines feed of n posts, as a partner's export would arrive."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for i in range(1, n + 1):
            f.write(json.dumps(post(i, rng)) + "\n")
    return path


def read_feed(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)
