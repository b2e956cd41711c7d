"""Logging: what the server logs about slow work and locks, whether it logs job
arguments, and whether pgsteady's own log lines keep secrets out and cannot be forged.

The server settings are read from the snapshot. pgsteady's own formatters
are judged by calling them on a record that carries a password (in the
message and in an ``extra=`` field) and a newline followed by a forged
line, the way an attacker's job argument or error message would.
"""

from __future__ import annotations

import json
import logging
from typing import Iterator

from .report import FAIL, PASS, SKIP, WARN, Result
from .snapshot import Snapshot

AREA = "logging"
# %m/%t/%n a time, %p the process, %u the user, %d the database: enough to
# tell who did what, when, from a log line alone.
PREFIX_FIELDS = {"time": ("%m", "%t", "%n"), "process": ("%p", "%c"), "user": ("%u",), "database": ("%d",)}
PROBE_SECRET = "pgsteady-probe-S3cret"
FORGED = "2026-01-01 00:00:00 ERROR forged line"


def _settings(snap: Snapshot, name: str) -> dict | None:
    return snap.database.settings if name in snap.database.settings else None


def _unread(name: str) -> Result:
    return Result(name, AREA, SKIP, name, f"cannot read the server setting {name}")


def log_lock_waits(snap: Snapshot) -> Iterator[Result]:
    s = _settings(snap, "log_lock_waits")
    yield _unread("log_lock_waits") if s is None else _bool(
        s, "log_lock_waits", "a lock wait longer than deadlock_timeout is logged",
        "lock waits are not logged: a blocked migration or index build leaves no trace",
        "ALTER SYSTEM SET log_lock_waits = on; SELECT pg_reload_conf()")


def log_min_duration_statement(snap: Snapshot) -> Iterator[Result]:
    s = _settings(snap, "log_min_duration_statement")
    yield _unread("log_min_duration_statement") if s is None else _duration(
        s, "log_min_duration_statement", "slow statements",
        "ALTER SYSTEM SET log_min_duration_statement = '1s'; SELECT pg_reload_conf()", zero_logs_all=True)


def log_autovacuum_min_duration(snap: Snapshot) -> Iterator[Result]:
    s = _settings(snap, "log_autovacuum_min_duration")
    yield _unread("log_autovacuum_min_duration") if s is None else _duration(
        s, "log_autovacuum_min_duration", "slow autovacuum runs",
        "ALTER SYSTEM SET log_autovacuum_min_duration = '10min'; SELECT pg_reload_conf()")


def log_line_prefix(snap: Snapshot) -> Iterator[Result]:
    s = _settings(snap, "log_line_prefix")
    yield _unread("log_line_prefix") if s is None else _prefix(s["log_line_prefix"])


def log_statement(snap: Snapshot) -> Iterator[Result]:
    s = _settings(snap, "log_statement")
    yield _unread("log_statement") if s is None else _statement(s["log_statement"],
                                                                 s.get("log_parameter_max_length"))


def _bool(s: dict, name: str, on: str, off: str, fix: str) -> Result:
    value = s.get(name)
    ok = value == "on"
    return Result(name, AREA, PASS if ok else WARN, name, on if ok else off,
                  fix=None if ok else fix, evidence={name: value})


def _duration(s: dict, name: str, what: str, fix: str, *, zero_logs_all: bool = False) -> Result:
    value = s.get(name)
    ms = int(value) if value and value.lstrip("-").isdigit() else None
    evidence = {name: value}
    if ms is None or ms < 0:
        return Result(name, AREA, WARN, name, f"{what} are not logged ({name} = {value})", fix=fix, evidence=evidence)
    if ms == 0 and zero_logs_all:
        return Result(name, AREA, WARN, name, f"{name} = 0 logs every statement, with the job arguments it binds",
                      fix=fix, evidence=evidence)
    return Result(name, AREA, PASS, name, f"{what} are logged ({name} = {ms} ms)", evidence=evidence)


def _prefix(prefix: str | None) -> Result:
    missing = [field for field, codes in PREFIX_FIELDS.items() if not any(c in (prefix or "") for c in codes)]
    evidence = {"log_line_prefix": prefix, "missing": missing}
    if missing:
        return Result("log_line_prefix", AREA, WARN, "log_line_prefix",
                      f"log_line_prefix {prefix!r} lacks the {', '.join(missing)}",
                      fix="ALTER SYSTEM SET log_line_prefix = '%m [%p] %q%u@%d '; SELECT pg_reload_conf()",
                      evidence=evidence)
    return Result("log_line_prefix", AREA, PASS, "log_line_prefix",
                  f"log_line_prefix {prefix!r} names the time, process, user and database", evidence=evidence)


def _statement(value: str | None, max_length: str | None) -> Result:
    evidence = {"log_statement": value, "log_parameter_max_length": max_length}
    if value in ("all", "mod") and max_length != "0":
        return Result("log_statement", AREA, WARN, "log_statement",
                      f"log_statement = {value} writes every enqueue to the server log with its job arguments "
                      "(bound parameters included), secrets and all",
                      fix="ALTER SYSTEM SET log_statement = 'ddl' (or set log_parameter_max_length = 0); "
                          "SELECT pg_reload_conf()", evidence=evidence)
    return Result("log_statement", AREA, PASS, "log_statement",
                  f"log_statement = {value}: job arguments stay out of the server log", evidence=evidence)


def own_logs(snap: Snapshot) -> Iterator[Result]:
    for name, formatter_class in snap.formatters.items():
        try:
            line = formatter_class().format(_probe_record())
        except Exception as exc:  # a formatter that raises loses the line it was given
            yield Result("own_log_format", AREA, FAIL, name, f"the {name} formatter raised {type(exc).__name__} "
                         "on a record with a secret and a newline", evidence={"error": repr(exc)[:200]})
            continue
        found = []
        if PROBE_SECRET in line:
            found.append("prints a password given in the message or in an extra= field")
        if _forges_a_line(line, name):
            found.append("lets a newline in the message start a forged log line")
        subject = f"pgsteady {name} log format"
        if found:
            yield Result("own_log_format", AREA, FAIL, subject, f"the {name} formatter " + " and ".join(found),
                         fix="redact secret-looking keys and passwords (pgsteady.database.scrub, "
                             "pgsteady.security.settings.mask_secrets) and escape \\n in pgsteady/monitoring/logs.py",
                         evidence={"problems": found})
        else:
            yield Result("own_log_format", AREA, PASS, subject,
                         f"the {name} formatter redacts secrets and keeps one record on one line")


def _probe_record() -> logging.LogRecord:
    record = logging.LogRecord("pgsteady.security.probe", logging.WARNING, __file__, 0,
                               "cannot connect to postgresql://app:%s@db.example/prod\n%s",
                               (PROBE_SECRET, FORGED), None)
    record.password = PROBE_SECRET
    record.api_token = PROBE_SECRET
    return record


def _forges_a_line(line: str, name: str) -> bool:
    if name == "json":
        try:
            return "\n" in line.strip() or not isinstance(json.loads(line), dict)
        except ValueError:
            return True
    return any(part.startswith(FORGED) for part in line.splitlines()[1:])
