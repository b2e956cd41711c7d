"""The App that the real-process tests run in `pgsteady worker` processes."""

from __future__ import annotations

import asyncio
import time

import psycopg

from pgsteady import App, Retry

app = App(release="proc-test")
QUICK = Retry(base=0.05, cap=0.5)


@app.task(name="ledger", transactional=True, retry=QUICK)
def ledger(ctx, n: int, sleep: float = 0.0, first_sleep: float | None = None) -> None:
    """Writes its ledger row in the transaction that completes the job."""
    ctx.conn.execute("INSERT INTO ledger (job_id, n) VALUES (%s, %s)", [ctx.id, n])
    time.sleep(first_sleep if first_sleep is not None and ctx.attempt == 1 else sleep)


@app.task(name="plain", retry=QUICK)
def plain(ctx, n: int, sleep: float = 0.0) -> None:
    """Records each run on its own connection: at-least-once, so it may repeat."""
    with psycopg.connect(app.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO runs (job_id, n) VALUES (%s, %s)", [ctx.id, n])
    time.sleep(sleep)


@app.task(name="nap", retry=QUICK)
async def nap(seconds: float) -> None:
    await asyncio.sleep(seconds)


@app.task(name="sync_nap", retry=QUICK)
def sync_nap(seconds: float) -> None:
    time.sleep(seconds)
