"""The job writes that run on a caller's connection, written once, async.

pgsteady/_writes_sync.py is generated from this file by tools/unasync.py
(``async``/``await`` dropped, the async psycopg names replaced), as
psycopg generates its sync modules; tests/test_enqueue.py fails when the two
drift. Edit this file, then run ``python tools/unasync.py``.
"""

from __future__ import annotations

from datetime import timedelta

import psycopg
from psycopg.types.json import Jsonb

from .payloads import JobRef, JobRow
from .queries import Queries

KEY_ATTEMPTS = 3
# From this many jobs without keys, enqueue_many uses COPY (two round trips,
# then far less work per row than an INSERT).
COPY_MIN = 100


async def insert(
    conn: psycopg.AsyncConnection, q: Queries, rows: list[JobRow], retention: timedelta, *, own: bool = False,
) -> list[JobRef]:
    """Insert rows; a row whose key is held by an active job is not inserted
    and gets that job's id instead. The unique index decides, not a read.

    ``own``: ``conn`` is an autocommit connection lent for this call alone.
    Work that one statement does then commits with that statement (one job:
    one round trip; jobs without keys: one COPY), and only a batch that may
    need more than one write (keys, or a COPY with some run_at given) opens
    a transaction, so a batch is still all or nothing."""
    first_of_key: dict[str, int] = {}
    todo: list[int] = []
    for i, row in enumerate(rows):  # one job per key within a batch
        if row.key is not None and row.key in first_of_key:
            continue
        if row.key is not None:
            first_of_key[row.key] = i
        todo.append(i)
    if len(rows) >= COPY_MIN and not first_of_key:
        timed = any(r.run_at is not None for r in rows)
        if own and timed:
            async with conn.transaction():
                return await _copy(conn, q, rows, timed)
        return await _copy(conn, q, rows, timed)
    if own and first_of_key and len(todo) > 1:
        async with conn.transaction():
            return await _insert(conn, q, rows, todo, first_of_key, retention)
    return await _insert(conn, q, rows, todo, first_of_key, retention)


async def _insert(
    conn: psycopg.AsyncConnection, q: Queries, rows: list[JobRow], todo: list[int],
    first_of_key: dict[str, int], retention: timedelta,
) -> list[JobRef]:
    """One INSERT of every row (``todo``: the first of each key), then the
    keys it found held, settled."""
    refs: list[JobRef | None] = [None] * len(rows)
    for _ in range(KEY_ATTEMPTS):
        inserted = await _insert_rows(conn, q, [rows[i] for i in todo])
        for i, job_id in zip(todo, inserted):
            if job_id is not None:
                refs[i] = JobRef(job_id, True, rows[i].key)
        todo = [i for i in todo if refs[i] is None]
        if not todo:
            break
        held = [rows[i].key for i in todo]
        # Keys of succeeded jobs past their retention are released, and those
        # rows tried again; the rest return the job that holds the key.
        cur = await conn.execute(q.release_expired_keys, {"keys": held, "retention": retention})
        await cur.fetchall()
        cur = await conn.execute(q.find_by_keys, {"keys": held})
        holders = {k: jid for k, jid, _ in await cur.fetchall()}
        for i in todo:
            if rows[i].key in holders:
                refs[i] = JobRef(holders[rows[i].key], False, rows[i].key)
        todo = [i for i in todo if refs[i] is None]
        if not todo:
            break
    if todo:
        raise RuntimeError(f"could not settle idempotency keys {[rows[i].key for i in todo][:5]} after {KEY_ATTEMPTS} tries")
    for i, row in enumerate(rows):
        if refs[i] is None:
            ref = refs[first_of_key[row.key]]
            refs[i] = JobRef(ref.id, False, row.key)
    return refs  # type: ignore[return-value]


async def _copy(conn: psycopg.AsyncConnection, q: Queries, rows: list[JobRow], timed: bool) -> list[JobRef]:
    """Many jobs without keys, by COPY; their ids ascend in input order, as
    the INSERT path's do, so a batch runs in the order it was given. Unless
    some job has a run_at (``timed``), run_at is left to its default, the
    COPY's own now(), and the COPY commits by itself on an autocommit
    connection."""
    cur = await conn.execute(q.reserve_job_ids, {"n": len(rows)})
    ids, now = await cur.fetchone()
    if timed:
        async with conn.cursor().copy(q.copy_jobs_at) as copy:
            for job_id, r in zip(ids, rows):
                await copy.write_row((job_id, r.queue, r.task, r.args, r.priority, r.run_at or now, r.max_attempts))
    else:
        async with conn.cursor().copy(q.copy_jobs) as copy:
            for job_id, r in zip(ids, rows):
                await copy.write_row((job_id, r.queue, r.task, r.args, r.priority, r.max_attempts))
    return [JobRef(job_id, True) for job_id in ids]


async def _insert_rows(conn: psycopg.AsyncConnection, q: Queries, rows: list[JobRow]) -> list[int | None]:
    """Ids for the rows inserted, None where an active key blocked the row:
    one statement, whatever the number of rows."""
    if len(rows) == 1:
        r = rows[0]
        cur = await conn.execute(q.insert_job, dict(queue=r.queue, task=r.task, args=r.args, key=r.key,
                                                    priority=r.priority, run_at=r.run_at,
                                                    max_attempts=r.max_attempts))
        got = await cur.fetchone()
        return [got[0] if got else None]
    cols = dict(zip(JobRow._fields, map(list, zip(*rows))))
    cur = await conn.execute(q.insert_jobs, cols)
    returned = sorted(await cur.fetchall())
    inserted_keys = {k for _, k in returned if k is not None}
    ids = iter(jid for jid, _ in returned)
    # Rows are inserted in input order, so ascending ids follow the input.
    return [None if (r.key is not None and r.key not in inserted_keys) else next(ids) for r in rows]


async def save_checkpoint(conn: psycopg.AsyncConnection, q: Queries, job_id: int, token: str, value: object) -> bool:
    """The one checkpoint write, fenced by the attempt's lease token: False
    when the attempt no longer holds the lease (nothing was written)."""
    cur = await conn.execute(q.save_checkpoint, dict(id=job_id, token=token, value=Jsonb(value)))
    return bool(await cur.fetchall())


async def complete_in_tx(conn: psycopg.AsyncConnection, q: Queries, job_id: int, token: str) -> bool:
    """Mark a transactional task's job succeeded inside its own transaction;
    False when the attempt no longer holds the lease (the caller rolls back)."""
    cur = await conn.execute(q.complete_job_in_tx, dict(id=job_id, token=token))
    return await cur.fetchone() is not None
