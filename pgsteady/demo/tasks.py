"""The demo's App and its tasks: a content site's background work.

    demo.import_feed   a partner's feed of posts, imported in chunks that each
                       commit with their checkpoint (pgsteady.imports.run_chunks)
    demo.sitemap       a cron event: the sitemap, every few seconds in the demo
    demo.send_digest   the weekly digest mail; the mail server times out twice

A worker started by the demo finds this App as ``pgsteady.demo.tasks:app``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from html import escape
from pathlib import Path

from psycopg.types.json import Jsonb

from ..app import App
from ..imports import run_chunks
from ..tasks import Context, Retry
from . import site

IMPORTS = "imports"
SITE = "site"
CHUNK = 500
SITEMAP = "demo.sitemap"
SITEMAP_CRON = "* * * * * */2"   # six fields, seconds last: every 2 seconds, for the demo's sake

app = App(release="demo-day")


def _paced(rows: Iterable[dict], every: int, pause: float) -> Iterator[dict]:
    """The feed's own pace: a pause before each chunk is fetched. The pause
    falls between chunks, outside any transaction (run_chunks reads a whole
    chunk before it opens the chunk's transaction)."""
    for i, row in enumerate(rows):
        if pause and i % every == 0:
            time.sleep(pause)
        yield row


@app.task(name="demo.import_feed", queue=IMPORTS, max_attempts=5, retry=Retry(base=0.2, cap=2.0))
def import_feed(ctx: Context, feed: str, total: int, pace: float = 0.0) -> None:
    resume_from = int((ctx.last_checkpoint or {}).get("position", 0))
    ctx.log("import starts", resume_from=resume_from, total=total)
    insert = site.queries().insert_post

    def handle(conn, chunk: list[dict]) -> None:
        conn.cursor().executemany(insert, [
            {**p, "scores": Jsonb(p["scores"]), "revision": Jsonb(p["revision"])} for p in chunk])

    done = run_chunks(ctx, _paced(site.read_feed(Path(feed)), CHUNK, pace), handle, chunk_size=CHUNK, total=total)
    ctx.log("import finished", resumed_from=resume_from, imported_by_this_attempt=done)


@app.periodic(SITEMAP_CRON, name=SITEMAP, queue=SITE, transactional=True, on_missed="skip")
def sitemap(ctx: Context) -> None:
    """Write the sitemap of every imported post, in the job's own transaction."""
    q = site.queries()
    rows = ctx.conn.execute(q.sitemap_rows).fetchall()
    body = "".join(f"<url><loc>https://site.example/{escape(slug)}</loc><lastmod>{at:%Y-%m-%d}</lastmod></url>"
                   for slug, at in rows)
    xml = f'<?xml version="1.0" encoding="UTF-8"?><urlset>{body}</urlset>'
    ctx.conn.execute(q.save_sitemap, {"urls": len(rows), "xml": xml})


@app.task(name="demo.send_digest", queue=SITE, max_attempts=5, retry=Retry(base=0.2, cap=1.0))
def send_digest(ctx: Context, week: str, fail_times: int = 2) -> None:
    """The digest mail; the mail server times out on the first attempts."""
    if ctx.attempt <= fail_times:
        raise TimeoutError(f"smtp.example.com:587 did not answer within 10 s (attempt {ctx.attempt})")
    ctx.log("digest sent", week=week, recipients=1200)
