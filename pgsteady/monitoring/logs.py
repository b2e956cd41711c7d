"""Structured logs: every line written while a job runs names the job.

The worker sets the fields for each attempt (``enter_job`` in the attempt's
own asyncio task; ``job_context(...)`` is the same as a block, for code of
your own); a ``JobContextFilter``
on the handler copies the job id, task, attempt and release from a context
variable onto every record, whichever logger wrote it (the task's own
``logging.getLogger(__name__)`` included). ``JsonFormatter`` prints one JSON
object per line; ``TextFormatter`` appends ``[job=42 task=… attempt=2
release=…]`` to the usual line. ``configure("json")`` sets both up on the
root logger, which is what `pgsteady worker --log-format json` calls.

Context variables follow asyncio tasks, but not threads started with
``loop.run_in_executor``: wrap the function with ``in_current_context(fn)``
so a sync task running in the thread pool logs with its job's fields.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, Callable, Iterator, TextIO, TypeVar

from ..database import scrub
from ..errors import ConfigError
from ..security.settings import MASK, secret_key_re

JOB_FIELDS = ("job_id", "task", "attempt", "release")
_job: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar("pgsteady_job", default=None)
T = TypeVar("T")

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", *JOB_FIELDS}


@contextmanager
def job_context(job_id: int, task: str, attempt: int, release: str | None = None) -> Iterator[None]:
    """Within this block (and the asyncio tasks it starts), log records carry the job's fields."""
    token = _job.set({"job_id": job_id, "task": task, "attempt": attempt, "release": release})
    try:
        yield
    finally:
        _job.reset(token)


def enter_job(job_id: int, task: str, attempt: int, release: str | None = None) -> None:
    """Like job_context, for the rest of the current context: for an asyncio
    task that runs one job and ends (its context is its own copy)."""
    _job.set({"job_id": job_id, "task": task, "attempt": attempt, "release": release})


def current_job() -> dict[str, Any] | None:
    """The fields of the job running in this context, or None."""
    return _job.get()


def in_current_context(fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` bound to a copy of the current context, for ``run_in_executor``."""
    ctx = contextvars.copy_context()
    return lambda: ctx.run(fn)


class JobContextFilter(logging.Filter):
    """Puts job_id, task, attempt and release on every record (None outside a job).

    Attach it to a handler, not a logger: a logger's filters do not see the
    records of its child loggers, a handler's see everything it writes."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = _job.get() or {}
        for name in JOB_FIELDS:
            if getattr(record, name, None) is None:  # an explicit extra= wins
                setattr(record, name, fields.get(name))
        return True


def _safe_message(record: logging.LogRecord) -> str:
    """The record's message with passwords removed (a DSN in an error, say)."""
    return scrub(record.getMessage())


def _safe_extra(key: str, value: Any) -> Any:
    """An extra= field as it may be logged: secret-looking keys masked, passwords scrubbed."""
    if secret_key_re().search(key):
        return MASK
    return scrub(value) if isinstance(value, str) else value


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message,
    the job fields when inside a job, any extra= fields, and the traceback.
    Passwords in the message and values of secret-looking extra= keys are
    masked; JSON escapes newlines, so one record stays one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _safe_message(record),
        }
        for name in JOB_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                out[name] = value
        for key, value in vars(record).items():
            if key not in _STANDARD and not key.startswith("_"):
                out[key] = _safe_extra(key, value)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exception"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """The usual text line, with the job's fields appended inside a job.

    Passwords in the message are masked, and a newline or carriage return in
    the message is written as \\n / \\r, so text from a job (an error
    message, a URL) can never start a line that looks like another record.
    A traceback still follows on the lines below."""

    def __init__(self, fmt: str = "%(asctime)s %(levelname)s %(name)s: %(message)s") -> None:
        super().__init__(fmt)

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(vars(record))
        safe.msg = _safe_message(record).replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")
        safe.args = None
        line = super().format(safe)
        if getattr(record, "job_id", None) is None:
            return line
        tags = " ".join(f"{name}={getattr(record, name)}" for name in JOB_FIELDS
                        if getattr(record, name, None) is not None)
        head, sep, rest = line.partition("\n")  # keep a traceback below the tagged line
        return f"{head} [{tags}]{sep}{rest}"


def configure(log_format: str = "text", level: int = logging.INFO, stream: TextIO | None = None) -> logging.Handler:
    """Log to ``stream`` (stderr) in "text" or "json", with the job fields on
    every record; replaces the root logger's handlers. Returns the handler."""
    if log_format not in ("text", "json"):
        raise ConfigError(f"log format {log_format!r} is not known; use text or json")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(JobContextFilter())
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    return handler
