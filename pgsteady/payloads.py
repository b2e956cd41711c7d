"""What one job carries, checked and encoded before anything is written.

Every enqueue path (``App.enqueue``, ``enqueue_many``, their async twins,
schedules and JSONL files) turns its items into ``JobRow``s here, so a bad
item is refused with one ``InvalidPayload`` line naming what is wrong, and
a batch with one bad item writes nothing. The limits come from
pgsteady/security/settings.py.
"""

from __future__ import annotations

import json
import json.encoder
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from .errors import InvalidPayload, check_options
from .security.settings import MAX_JSON_DEPTH, MAX_KEY_BYTES, MAX_QUEUE_NAME_BYTES

SMALLINT = (-32768, 32767)
INT_MAX = 2**31 - 1
OPTIONS = frozenset({"task", "args", "key", "queue", "priority", "run_at"})
# An escaped NUL in JSON text: \u0000 not itself preceded by an escaping backslash.
_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def _encoder() -> Callable[[Any], str]:
    """One encoder for every job. JSONEncoder.encode builds its C encoder
    anew on every call (about two thirds of the time of encoding a small
    object), so it is built once here; without the C module (not CPython)
    the plain encoder is used. A cycle, which the plain encoder names, ends
    here as a RecursionError: reported as nesting too deep."""
    plain = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return plain.encode
    fast = make(None, plain.default, json.encoder.encode_basestring, None, ":", ",", False, False, False)
    return lambda value: "".join(fast(value, 0))


_ENCODE = _encoder()


@dataclass(frozen=True)
class JobRef:
    """What enqueue returns: the job's id, and whether this call created it
    (False when an active job already held the idempotency key)."""

    id: int
    created: bool
    key: str | None = None


class JobRow(NamedTuple):  # a tuple: the bulk insert turns rows into columns with zip()
    queue: str
    task: str
    args: str
    key: str | None
    priority: int
    run_at: datetime | None
    max_attempts: int


def check_text(value: object, what: str, *, max_bytes: int, exc: type[Exception] = InvalidPayload) -> str:
    """A non-empty string PostgreSQL can store as text, at most ``max_bytes``."""
    if not isinstance(value, str) or not value:
        raise exc(f"{what} must be a non-empty string, not {type(value).__name__}")
    if "\x00" in value:
        raise exc(f"{what} contains a NUL character, which PostgreSQL text cannot store; remove it")
    try:
        size = len(value) if value.isascii() else len(value.encode())
    except UnicodeEncodeError:
        raise exc(f"{what} contains a lone surrogate (invalid Unicode); decode the text properly") from None
    if size > max_bytes:
        raise exc(f"{what} is {size:,} bytes, over the {max_bytes:,}-byte limit; use a shorter one")
    return value


def check_queue(queue: object, exc: type[Exception] = InvalidPayload) -> str:
    # The queue name is the payload of the wake-up notification, and shown everywhere.
    return check_text(queue, "queue name", max_bytes=MAX_QUEUE_NAME_BYTES, exc=exc)


def check_int(value: object, what: str, lo: int, hi: int, exc: type[Exception] = InvalidPayload) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise exc(f"{what} must be an integer between {lo} and {hi}, not {value!r}")
    return value


def _depth_over(value: Any, limit: int) -> bool:
    """Whether containers nest deeper than ``limit`` (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, Mapping) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, (Mapping, list, tuple)))
    return False


def encode_args(task_name: str, args: Any, max_bytes: int) -> str:
    where = f"args of task {task_name!r}"
    args = {} if args is None else args
    if type(args) is not dict and not isinstance(args, Mapping):
        raise InvalidPayload(f"{where} must be a JSON object (a dict), not {type(args).__name__}")
    try:
        encoded = _ENCODE(args)
    except RecursionError:
        raise InvalidPayload(f"{where} nest deeper than {MAX_JSON_DEPTH} levels; flatten them") from None
    except (TypeError, ValueError) as exc:
        raise InvalidPayload(f"{where} are not JSON: {exc}; pass strings, numbers, lists and objects") from None
    # Counting brackets is cheap; only a payload with many of them is walked.
    if encoded.count("[") + encoded.count("{") > MAX_JSON_DEPTH and _depth_over(args, MAX_JSON_DEPTH):
        raise InvalidPayload(f"{where} nest deeper than {MAX_JSON_DEPTH} levels; flatten them")
    if "\\u0000" in encoded and _NUL.search(encoded):
        raise InvalidPayload(f"{where} contain a NUL character (\\u0000), which PostgreSQL's jsonb cannot store; remove it")
    if encoded.isascii():
        size = len(encoded)
    else:
        try:
            size = len(encoded.encode())
        except UnicodeEncodeError:
            raise InvalidPayload(f"{where} contain a lone surrogate (invalid Unicode); decode the text properly") from None
    if size > max_bytes:
        raise InvalidPayload(
            f"{where} are {size:,} bytes, over the {max_bytes:,}-byte limit; "
            "store large data in a table and pass its id (or raise App(max_payload_bytes=...))"
        )
    return encoded


def when(run_at: datetime | timedelta | None) -> datetime | None:
    if run_at is None:
        return None
    if isinstance(run_at, timedelta):
        return datetime.now(timezone.utc) + run_at
    if isinstance(run_at, datetime):
        if run_at.tzinfo is None:
            raise InvalidPayload("run_at must be timezone-aware (for example datetime.now(timezone.utc))")
        return run_at
    raise InvalidPayload("run_at must be a datetime or a timedelta")


def job_row(app: Any, item: Mapping[str, Any] | tuple) -> JobRow:
    """One enqueue item of ``app`` as a row, or one clear error."""
    if isinstance(item, tuple):
        if len(item) != 2:
            raise InvalidPayload("a job given as a tuple must be (task_name, args)")
        item = {"task": item[0], "args": item[1]}
    if not OPTIONS.issuperset(item):
        check_options(item, OPTIONS, "a job")
    name = item.get("task")
    task = app.tasks.get(name) if isinstance(name, str) else None
    if task is None:
        task = app.get_task(name if isinstance(name, str) else repr(name))
    encoded = encode_args(task.name, item.get("args"), app.max_payload_bytes)
    key = item.get("key")
    if key is not None:
        check_text(key, "key", max_bytes=MAX_KEY_BYTES)
    queue = item.get("queue")
    queue = task.queue if queue is None else check_queue(queue)
    priority = item.get("priority")
    priority = task.priority if priority is None else check_int(priority, "priority", *SMALLINT)
    return JobRow(queue, task.name, encoded, key, priority, when(item.get("run_at")), task.max_attempts)
