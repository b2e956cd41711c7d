"""Imports that can stop halfway: chunks with checkpoints, and jobs from a file.

``run_chunks`` is for the import task itself: it walks an iterable (rows of a
file, items of a feed) in chunks, and commits each chunk's writes in the same
transaction as the job's checkpoint, fenced by the attempt's lease token. A
killed attempt therefore leaves a checkpoint that matches exactly the rows
written, and the next attempt resumes after them: nothing skipped, nothing
twice.

``enqueue_file`` is for `pgsteady enqueue --from-file`: one job per JSON line,
enqueued in bulk, idempotent through keys.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Callable, Iterable

import psycopg

from .errors import ConfigError, PgsteadyError
from .payloads import job_row
from .tasks import Context

CHUNK = 500
FILE_CHUNK = 5000


def run_chunks(ctx: Context, items: Iterable[Any], handle: Callable[[psycopg.Connection, list], None], *,
               chunk_size: int = CHUNK, total: int | None = None) -> int:
    """Call ``handle(conn, chunk)`` for each chunk of ``items`` not done by an
    earlier attempt; returns how many items this attempt processed.

    ``handle`` writes through ``conn``; its writes and the checkpoint
    ``{"position": n, "total": total}`` commit together. Use it from a sync,
    non-transactional task (each chunk is its own transaction)."""
    if ctx.conn is not None:
        raise ConfigError("run_chunks commits one transaction per chunk; use it in a task without transactional=True")
    if chunk_size < 1:
        raise ConfigError("chunk_size must be >= 1")
    start = int((ctx.last_checkpoint or {}).get("position", 0))
    it = iter(items)
    for _ in islice(it, start):  # skip what earlier attempts committed
        pass
    position = start
    with ctx.connection() as conn:
        while not ctx.cancelled:
            chunk = list(islice(it, chunk_size))
            if not chunk:
                break
            with conn.transaction():
                handle(conn, chunk)
                position += len(chunk)
                # Raises LeaseLost, rolling this chunk back, when another attempt owns the job.
                ctx.checkpoint_in(conn, {"position": position, "total": total})
    return position - start


@dataclass
class FileResult:
    new: int = 0
    existing: int = 0
    bad: list[tuple[int, str]] = field(default_factory=list)
    committed: bool = True


def parse_line(app, text: str) -> dict:
    """One JSONL line as an enqueue item; raises ValueError with the reason."""
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(item, dict):
        raise ValueError("not a JSON object")
    if "task" not in item:
        raise ValueError('missing "task"')
    if isinstance(item.get("run_at"), str):
        from datetime import datetime

        try:
            item["run_at"] = datetime.fromisoformat(item["run_at"])
        except ValueError:
            raise ValueError(f'"run_at" {item["run_at"]!r} is not an ISO 8601 time') from None
    try:
        job_row(app, item)  # the same checks as app.enqueue
    except PgsteadyError as exc:
        raise ValueError(str(exc)) from None
    return item


def enqueue_file(app, path: Path, *, all_or_nothing: bool, on_progress: Callable[[int], None] | None = None) -> FileResult:
    """Enqueue one job per non-empty line of a JSONL file.

    Default: good lines are enqueued (committed every FILE_CHUNK lines) and bad
    ones reported. With ``all_or_nothing`` every line goes in one transaction
    that is rolled back if any line is bad. ``on_progress(lines_read)`` is
    called after each chunk."""
    result = FileResult()
    batch: list[dict] = []
    with path.open(encoding="utf-8") as f, app.pool().connection() as conn:
        with conn.transaction() if all_or_nothing else contextlib.nullcontext():
            seen = 0
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                seen += 1
                try:
                    batch.append(parse_line(app, line))
                except ValueError as exc:
                    result.bad.append((lineno, str(exc)))
                if len(batch) >= FILE_CHUNK:
                    _flush(app, conn, batch, result, own_tx=not all_or_nothing)
                    if on_progress:
                        on_progress(seen)
            _flush(app, conn, batch, result, own_tx=not all_or_nothing)
            if on_progress:
                on_progress(seen)
            if all_or_nothing and result.bad:
                result.committed = False
                result.new = result.existing = 0
                raise psycopg.Rollback()  # leaves the block, rolling back every line
    return result


def _flush(app, conn, batch: list[dict], result: FileResult, *, own_tx: bool) -> None:
    if not batch:
        return
    if own_tx:
        with conn.transaction():
            refs = app.enqueue_many(batch, conn=conn)
    else:
        refs = app.enqueue_many(batch, conn=conn)
    result.new += sum(r.created for r in refs)
    result.existing += sum(not r.created for r in refs)
    batch.clear()
