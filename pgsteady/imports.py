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

from .security.settings import MAX_JSONL_LINE_BYTES
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
    non-transactional task (each chunk is its own transaction, opened with
    ``ctx.transaction`` so it carries the worker's leash behind any pooler)."""
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
            with ctx.transaction(conn):  # on the worker's leash, whatever the pooler
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
    lines: int = 0


class FileRefused(PgsteadyError):
    """The database refused a chunk of a JSONL file that had passed every check."""


def parse_line(app, text: str) -> dict:
    """One JSONL line as an enqueue item; raises ValueError with the reason."""
    try:
        item = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("not JSON this program can read (nested too deeply)") from None
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
    except (RecursionError, TypeError, ValueError) as exc:
        raise ValueError(f"cannot be enqueued ({type(exc).__name__}: {exc})") from None
    return item


def _numbered(lines: Iterable[bytes | str]):
    """(line number, text) of the non-empty lines; a line that is not UTF-8 comes back as a ValueError."""
    for lineno, raw in enumerate(lines, 1):
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
        if size > MAX_JSONL_LINE_BYTES:
            yield lineno, ValueError(f"the line is {size:,} bytes, over the {MAX_JSONL_LINE_BYTES:,}-byte limit "
                                     "of one job; store large data in a table and pass its id")
            continue
        if isinstance(raw, bytes):
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield lineno, ValueError(f"not UTF-8 (byte {exc.start + 1})")
                continue
        if raw.strip():
            yield lineno, raw


def enqueue_file(app, source: Path | Callable[[], Iterable[bytes | str]], *, all_or_nothing: bool,
                 on_progress: Callable[[int], None] | None = None) -> FileResult:
    """Enqueue one job per non-empty line of a JSONL file.

    Two passes: the first checks every line (JSON, task, arguments, the same
    checks as app.enqueue) and writes nothing; the second enqueues. So a bad
    line is always reported as ``line: reason``, before anything is written.

    - Default: good lines are enqueued (committed every FILE_CHUNK lines) and
      the bad ones reported.
    - ``all_or_nothing``: if any line is bad nothing is written; otherwise
      every line goes in one transaction, so a refusal by the database (a
      constraint, a lost connection) also leaves nothing behind.

    If the database refuses a chunk of checked lines, FileRefused names the
    line range and what was committed before it. ``source`` is a path (read
    twice) or a function returning the lines afresh (stdin: read once by the
    caller). ``on_progress(lines_written)`` is called after each chunk."""
    def lines() -> Iterable[bytes | str]:
        return source() if callable(source) else _read(source)

    result = FileResult()
    for lineno, text in _numbered(lines()):
        result.lines += 1
        try:
            if isinstance(text, ValueError):
                raise text
            parse_line(app, text)
        except ValueError as exc:
            result.bad.append((lineno, str(exc)))
    if all_or_nothing and result.bad:
        result.committed = False
        return result
    bad = {n for n, _ in result.bad}
    batch: list[dict] = []
    first = last = seen = 0
    with app.pool().connection() as conn:
        with conn.transaction() if all_or_nothing else contextlib.nullcontext():
            for lineno, text in _numbered(lines()):
                if lineno in bad:
                    continue
                first, last = first or lineno, lineno
                batch.append(parse_line(app, text))
                seen += 1
                if len(batch) >= FILE_CHUNK:
                    _flush(app, conn, batch, result, (first, last), own_tx=not all_or_nothing)
                    first = 0
                    if on_progress:
                        on_progress(seen)
            _flush(app, conn, batch, result, (first, last), own_tx=not all_or_nothing)
            if on_progress:
                on_progress(seen)
    return result


def _read(path: Path):
    with path.open("rb") as f:
        yield from f


def _flush(app, conn, batch: list[dict], result: FileResult, span: tuple[int, int], *, own_tx: bool) -> None:
    if not batch:
        return
    try:
        with conn.transaction() if own_tx else contextlib.nullcontext():
            refs = app.enqueue_many(batch, conn=conn)
    except (psycopg.Error, UnicodeEncodeError) as exc:  # UnicodeEncodeError: a lone surrogate reached the driver
        from .database import scrub

        reason = scrub(str(exc)).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        kept = ("nothing was enqueued (one transaction)" if not own_tx else
                f"{result.new:,} new jobs from the lines before were committed; with keys, running the file "
                "again enqueues only the rest")
        raise FileRefused(f"lines {span[0]}-{span[1]}: the database refused them ({reason}); {kept}") from None
    result.new += sum(r.created for r in refs)
    result.existing += sum(not r.created for r in refs)
    batch.clear()
