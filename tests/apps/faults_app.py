"""The App of the fault suite (tests/faults): jobs whose effects can be counted."""

from __future__ import annotations

import asyncio
import time

from pgsteady import App, Retry
from pgsteady.imports import run_chunks

app = App(release="faults")
QUICK = Retry(base=0.05, cap=0.3)


@app.task(name="effect", transactional=True, max_attempts=100, retry=QUICK)
def effect(ctx, n: int, hold: float = 0.0) -> None:
    """Takes the row lock of counter n, records the effect, holds the
    transaction open for ``hold`` seconds: exactly once, or not at all."""
    ctx.conn.execute("UPDATE counters SET v = v + 1 WHERE n = %s", [n])
    ctx.conn.execute("INSERT INTO effects (n, job_id, attempt) VALUES (%s, %s, %s)", [n, ctx.id, ctx.attempt])
    deadline = time.monotonic() + hold
    while time.monotonic() < deadline and not ctx.cancelled:
        time.sleep(0.02)


@app.task(name="nap", max_attempts=100, retry=QUICK)
async def nap(seconds: float) -> None:
    await asyncio.sleep(seconds)


@app.task(name="leash", transactional=True, max_attempts=100, retry=QUICK)
def leash(ctx) -> None:
    """Records, as its effect, the idle-in-transaction timeout its transaction runs under (ms)."""
    ctx.conn.execute("INSERT INTO effects (n, job_id, attempt) SELECT setting::int, %s, %s FROM pg_settings "
                     "WHERE name = 'idle_in_transaction_session_timeout'", [ctx.id, ctx.attempt])


@app.task(name="chunk_leash", max_attempts=100, retry=QUICK)
def chunk_leash(ctx, chunks: int = 2) -> None:
    """Records, once per run_chunks chunk, the idle-in-transaction timeout the chunk's transaction runs under."""
    def handle(conn, chunk) -> None:
        conn.execute("INSERT INTO effects (n, job_id, attempt) SELECT setting::int, %s, %s FROM pg_settings "
                     "WHERE name = 'idle_in_transaction_session_timeout'", [ctx.id, ctx.attempt])

    run_chunks(ctx, range(chunks), handle, chunk_size=1)


@app.task(name="fail_once", max_attempts=100, retry=QUICK)
async def fail_once(ctx, seconds: float) -> None:
    """Fails its first attempt after ``seconds``: a failure to record."""
    await asyncio.sleep(seconds)
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt always fails")
