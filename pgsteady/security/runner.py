"""Run every security check over one snapshot and collect a Report.

CHECKS is the whole checklist: (name, function over the Snapshot). To add a
check, write a small function that yields Results from the snapshot in the
module of its area, add what it needs to the snapshot's one read
(snapshot.py, local.py or web.py), and add a row here; docs/security.md
lists the checks in the same order.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable, Iterable, Iterator, Mapping

from ..database import describe
from ..errors import ConfigError
from ..monitoring.logs import JsonFormatter, TextFormatter
from ..queries import validate_schema
from . import headers, limits, local, logs, permissions, secrets, web
from .report import SKIP, Report, Result
from .roles import validate_prefix
from .settings import SECRET_KEY_PATTERN, SECURITY_CHECK_SAMPLE
from .snapshot import Snapshot, read_database

CHECKS: list[tuple[str, Callable[[Snapshot], Iterator[Result]]]] = [
    ("app_role", permissions.app_role),
    ("least_privilege_roles", permissions.least_privilege_roles),
    ("public_privileges", permissions.public_privileges),
    ("pg_hba", permissions.pg_hba),
    ("ssl", permissions.connection_ssl),
    ("password_encryption", permissions.password_encryption),
    ("command_line", secrets.command_line),
    ("secret_files", secrets.files),
    ("stored_secrets", secrets.stored_secrets),
    ("hsts", headers.hsts),
    ("csp", headers.csp),
    ("nosniff", headers.nosniff),
    ("framing", headers.framing),
    ("referrer_policy", headers.referrer_policy),
    ("cookies", headers.cookies),
    ("cacheable_cookie", headers.cacheable_cookie),
    ("cache_rules", headers.cache_rules),
    ("own_limits", limits.own_limits),
    ("site_upload_limit", limits.site_limits),
    ("log_lock_waits", logs.log_lock_waits),
    ("log_min_duration_statement", logs.log_min_duration_statement),
    ("log_autovacuum_min_duration", logs.log_autovacuum_min_duration),
    ("log_line_prefix", logs.log_line_prefix),
    ("log_statement", logs.log_statement),
    ("own_log_format", logs.own_logs),
]

FORMATTERS: dict[str, type[logging.Formatter]] = {"text": TextFormatter, "json": JsonFormatter}


def gather(
    dsn: str,
    *,
    schema: str = "pgsteady",
    role_prefix: str | None = None,
    urls: Iterable[str] = (),
    env_files: Iterable[str] = (),
    argv: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    home: Any = None,
    scan_processes: bool = True,
    probe_uploads: bool = False,
    http_timeout: float = 10.0,
    sample: int = SECURITY_CHECK_SAMPLE,
    app: Any = None,
    cache_rules: str | None = None,
    formatters: Mapping[str, type[logging.Formatter]] | None = None,
) -> Snapshot:
    """Read everything once. Bad input (a URL, a file, a prefix) raises ConfigError before anything is read."""
    validate_schema(schema)
    prefix = validate_prefix(role_prefix or schema)
    urls = [web.validate_url(u) for u in urls]
    if not isinstance(sample, int) or not 1 <= sample <= 100_000:
        raise ConfigError(f"--sample {sample!r} is out of range; use 1 to 100000")
    if cache_rules is not None and not os.path.isfile(cache_rules):
        raise ConfigError(f"--cache-rules {cache_rules}: no such file")
    environ = os.environ if environ is None else environ
    pattern = environ.get("PGSTEADY_SECRET_KEYS") or SECRET_KEY_PATTERN
    facts = local.gather(sys.argv if argv is None else argv, environ, env_files, home=home,
                         scan_processes=scan_processes, pattern=pattern)
    responses = []
    for url in urls:
        response = web.fetch(url, timeout=http_timeout, probe=probe_uploads)
        if response.error:
            raise ConfigError(f"{response.error}; check --url")
        responses.append(response)
    database = read_database(dsn, schema, role_prefix=prefix, sample=sample)
    return Snapshot(schema=schema, role_prefix=prefix, database=database, local=facts, responses=responses,
                    limits=limits.in_effect(app), formatters=dict(formatters or FORMATTERS),
                    secret_pattern=pattern, sample=sample, cache_rules=cache_rules)


def run(snap: Snapshot) -> list[Result]:
    results: list[Result] = []
    for name, check in CHECKS:
        try:
            results.extend(check(snap))
        except Exception as exc:  # one broken check must not hide the others' answers
            results.append(Result(name, _area_of(check), SKIP, name,
                                  f"the check itself failed ({type(exc).__name__}: {str(exc)[:200]}); please report it"))
    return results


def check(dsn: str, **options: Any) -> Report:
    """Gather a snapshot and run every check: ``check(dsn, urls=[...], env_files=[...])``."""
    started = time.perf_counter()
    snap = gather(dsn, **options)
    results = run(snap)
    return Report(results=results, database=describe(dsn), role=snap.database.connection["role"],
                  schema=snap.schema, checked_at=datetime.now(timezone.utc),
                  duration_seconds=time.perf_counter() - started, urls=[r.url for r in snap.responses])


def _area_of(fn: Callable) -> str:
    return getattr(sys.modules[fn.__module__], "AREA", "permissions")
