"""The change file: one index change with its owner, reason, expectations and rollback.

A TOML file kept in the repository next to the code it serves (for example
``changes/2026-11-28-events-created-at.toml``); ``pgsteady change new``
writes a commented template. Everything is checked when the file is read,
with one-line errors that name the field.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import durations
from ..errors import ConfigError, check_options
from . import statements

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TOP = {"id", "title", "owner", "reason", "ddl", "rollback", "files", "watch", "build", "rehearse", "queries"}
_QUERY = {"name", "sql", "params", "repeat", "expect_max_ms", "expect_index"}
_BUILD = {"lock_timeout", "lock_retries", "retry_backoff", "wait_for_other_build", "slot_lease"}
_REHEARSE = {"sample", "skip"}


class ChangeFileError(ConfigError):
    """A change file that cannot be used as it is."""


def seconds(value: Any, where: str) -> float:
    """``"2s"``, ``"500ms"``, ``"10m"``, ``"1h"``, ``"1d"`` or a number of seconds (durations.seconds)."""
    return durations.seconds(value, where, exc=ChangeFileError)


@dataclass
class Query:
    name: str
    sql: str
    params: dict[str, Any] = field(default_factory=dict)
    repeat: int = 7
    expect_max_ms: float | None = None
    expect_index: str | None = None


@dataclass
class ChangeFile:
    path: Path
    id: str
    title: str
    owner: str
    reason: str
    ddl: str
    rollback: str | None
    files: list[str] | None
    watch_seconds: float
    lock_timeout: float = 2.0
    lock_retries: int = 5
    retry_backoff: float = 2.0
    wait_for_other_build: float = 600.0
    slot_lease: float = 30.0
    sample: float = 1.0
    skip_rehearsal: bool = False
    queries: list[Query] = field(default_factory=list)
    sha: str = ""

    @property
    def note_path(self) -> Path:
        """The Markdown record, written next to the change file."""
        return self.path.with_suffix(".md")

    def statement(self) -> statements.IndexChange | None:
        """The parsed DDL when it is exactly one index change (lint says why otherwise)."""
        nodes = statements.parse(self.ddl)
        return statements.describe(nodes[0], self.ddl) if len(nodes) == 1 else None


def load(path: str | Path) -> ChangeFile:
    path = Path(path)
    if path.suffix.lower() == ".md":
        raise ChangeFileError(f"{path}: a change file must not end in .md, which is where its note is written; "
                              "rename it to .toml")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ChangeFileError(f"cannot read change file {path}: {exc.strerror}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ChangeFileError(f"{path} is not valid TOML: {exc}") from None
    where = str(path)
    check_options(data, _TOP, where, what="field", exc=ChangeFileError)
    text = {k: _text(data, k, where) for k in ("id", "title", "owner", "reason", "ddl")}
    if not _ID.match(text["id"]):
        raise ChangeFileError(f"{where}: id {text['id']!r} must be letters, digits, '.', '_' or '-' (at most 100)")
    build = _table(data, "build", _BUILD, where)
    rehearse = _table(data, "rehearse", _REHEARSE, where)
    sample = rehearse.get("sample", 1.0)
    if not isinstance(sample, (int, float)) or not 0 < sample <= 1:
        raise ChangeFileError(f"{where}: rehearse.sample must be a fraction of rows, above 0 and at most 1")
    retries = build.get("lock_retries", 5)
    if not isinstance(retries, int) or not 1 <= retries <= 100:
        raise ChangeFileError(f"{where}: build.lock_retries must be an integer from 1 to 100")
    files = data.get("files")
    if files is not None and not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
        raise ChangeFileError(f"{where}: files must be a list of paths")
    rollback = data.get("rollback")
    if rollback is not None and (not isinstance(rollback, str) or not rollback.strip()):
        raise ChangeFileError(f"{where}: rollback must be SQL text (or leave it out to derive it)")
    change = ChangeFile(
        path=path, id=text["id"], title=text["title"], owner=text["owner"], reason=text["reason"],
        ddl=text["ddl"].strip().rstrip(";").strip(), rollback=rollback.strip().rstrip(";") if rollback else None,
        files=files, watch_seconds=seconds(data.get("watch", "0s"), "watch"),
        lock_timeout=seconds(build.get("lock_timeout", "2s"), "build.lock_timeout"), lock_retries=retries,
        retry_backoff=seconds(build.get("retry_backoff", "2s"), "build.retry_backoff"),
        wait_for_other_build=seconds(build.get("wait_for_other_build", "10m"), "build.wait_for_other_build"),
        slot_lease=seconds(build.get("slot_lease", "30s"), "build.slot_lease"),
        sample=float(sample), skip_rehearsal=bool(rehearse.get("skip", False)),
        queries=[_query(q, i, where) for i, q in enumerate(data.get("queries", []))],
        sha=hashlib.sha256(raw).hexdigest()[:16],
    )
    if change.slot_lease < 1:
        raise ChangeFileError(f"{where}: build.slot_lease must be at least 1s (the build renews it four times a lease)")
    if change.lock_timeout <= 0:
        raise ChangeFileError(f"{where}: build.lock_timeout must be above 0 (a build must never wait forever)")
    names = [q.name for q in change.queries]
    if len(set(names)) != len(names):
        raise ChangeFileError(f"{where}: two queries share a name; give each [[queries]] its own name")
    return change


def _text(data: dict, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ChangeFileError(f"{where}: {key!r} is required (a non-empty string)")
    return value.strip()


def _table(data: dict, key: str, allowed: set[str], where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ChangeFileError(f"{where}: [{key}] must be a table")
    check_options(value, allowed, f"{where} [{key}]", what="field", exc=ChangeFileError)
    return value


def _query(q: Any, i: int, where: str) -> Query:
    here = f"{where} [[queries]] #{i + 1}"
    if not isinstance(q, dict):
        raise ChangeFileError(f"{here} must be a table")
    check_options(q, _QUERY, here, what="field", exc=ChangeFileError)
    name, text = q.get("name"), q.get("sql")
    if not isinstance(name, str) or not name or not isinstance(text, str) or not text.strip():
        raise ChangeFileError(f"{here} needs name and sql")
    params = q.get("params", {})
    if not isinstance(params, dict):
        raise ChangeFileError(f"{here} ({name}): params must be a table of name = value")
    repeat = q.get("repeat", 7)
    if not isinstance(repeat, int) or not 1 <= repeat <= 1000:
        raise ChangeFileError(f"{here} ({name}): repeat must be an integer from 1 to 1000")
    try:
        parsed = statements.parse_query(text)
    except statements.StatementError as exc:
        raise ChangeFileError(f"{here} ({name}): {exc}") from None
    missing = sorted(set(parsed.params) - set(params))
    if missing:
        raise ChangeFileError(f"{here} ({name}): no value for %({missing[0]})s; add it to params")
    limit = q.get("expect_max_ms")
    if limit is not None and (not isinstance(limit, (int, float)) or limit <= 0):
        raise ChangeFileError(f"{here} ({name}): expect_max_ms must be a positive number of milliseconds")
    return Query(name, text.strip().rstrip(";"), params, repeat, limit, q.get("expect_index"))


def files_touched(change: ChangeFile) -> list[str]:
    """The files of the change: as listed, else what git says changed with it.

    From git: the files of the commit that added the change file, plus the
    tracked files modified or staged in the working tree now. Untracked files
    are left out (a scratch file is not part of the change), except the
    change file itself.
    """
    if change.files is not None:
        return change.files
    folder = change.path.resolve().parent

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout if out.returncode == 0 else None

    def lines(text: str | None) -> list[str]:
        return [line.strip() for line in (text or "").splitlines() if line.strip()]

    root = lines(git("rev-parse", "--show-toplevel"))
    if not root:
        return [str(change.path)]
    rel = str(change.path.resolve().relative_to(Path(root[0]).resolve()))
    found: list[str] = []
    added = lines(git("log", "--diff-filter=A", "--format=%H", "--", rel))
    if added:
        found += lines(git("show", "--name-only", "--format=", added[-1]))
    found += tracked_changes(git("status", "--porcelain=v1", "-z", "--untracked-files=no") or "")
    found.append(rel)
    return sorted(dict.fromkeys(found))


def tracked_changes(porcelain_z: str) -> list[str]:
    """Paths in ``git status --porcelain=v1 -z`` output: ``XY path``, NUL-separated; a rename's
    original path follows it as a field of its own, and is skipped."""
    fields = porcelain_z.split("\0")
    paths: list[str] = []
    i = 0
    while i < len(fields):
        entry = fields[i]
        i += 1
        if len(entry) < 4 or entry[2] != " ":
            continue
        status, path = entry[:2], entry[3:]
        if status == "??":
            continue
        paths.append(path)
        if "R" in status or "C" in status:
            i += 1  # the source path of a rename or copy
    return paths


TEMPLATE = '''\
# A pgsteady index change: reviewed, measured and repeatable.
#   pgsteady change lint {path}      refuse what would hurt
#   pgsteady change plan {path}      capture current behaviour
#   pgsteady change rehearse {path}  try it on a copy of the data
#   pgsteady change apply {path} --wait
#   pgsteady change verify {path}
# The record is written to {note} after every step.

id = "{id}"
title = "Speed up the latest-events query"
owner = "you@example.com"
reason = """
The homepage lists the newest events; EXPLAIN shows a sequential scan and a
sort of the whole table on every request.
"""

# Exactly one statement, CONCURRENTLY: CREATE, DROP or REINDEX of an index.
ddl = "CREATE INDEX CONCURRENTLY idx_events_created_at ON events (created_at DESC)"

# The way back. Left out, it is derived: DROP for a CREATE, the index's
# current definition for a DROP, nothing for a REINDEX.
# rollback = "DROP INDEX CONCURRENTLY IF EXISTS public.idx_events_created_at"

# The files this change goes with; left out, they come from git.
# files = ["app/events.py", "{path}"]

# How long `change verify` watches job failures and statement times.
watch = "10m"

[build]
lock_timeout = "2s"        # never queue other sessions behind the DDL for longer
lock_retries = 5           # lock timeouts retried this many times, with backoff
retry_backoff = "2s"       # doubles after each lock timeout
wait_for_other_build = "10m"
slot_lease = "30s"         # a dead builder's hold on the table ends this long after its last renewal

[rehearse]
sample = 1.0               # fraction of rows copied to the scratch schema
# skip = true              # only when a copy is impossible; recorded as skipped

# The queries the index is for, with parameters (psycopg style: %(name)s, and
# %% for a literal %). They run under EXPLAIN ANALYZE: SELECTs only.
[[queries]]
name = "latest_events"
sql = "SELECT id, created_at FROM events ORDER BY created_at DESC LIMIT %(n)s"
params = {{ n = 50 }}
repeat = 7
expect_max_ms = 5
expect_index = "idx_events_created_at"
'''


def template(path: Path, change_id: str) -> str:
    return TEMPLATE.format(path=path, note=path.with_suffix(".md"), id=change_id)
