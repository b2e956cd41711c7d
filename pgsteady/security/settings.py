"""Every security-relevant setting pgsteady has, with its default and why.

This table is the one home of these values: the modules that enforce a limit
import it from here, `pgsteady security check` reports them, and
docs/security.md lists the same rows (a test keeps the two in step). To add a
setting, add a `Setting` row and a constant, then use the constant where the
rule is enforced.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str            # how a user sets it: an App/Worker argument, an option or an environment variable
    default: Any
    area: str            # permissions | secrets | headers | upload limits | logging
    why: str


# The checklist (`pgsteady security check`) ---------------------------------

HSTS_MIN_MAX_AGE = 180 * 24 * 3600
"""Shortest Strict-Transport-Security max-age the header check accepts (180 days)."""

SECURITY_CHECK_SAMPLE = 1000
"""Newest jobs (and recent events) whose keys the secrets check samples (--sample)."""

# Upload limits -------------------------------------------------------------

MAX_PAYLOAD_BYTES = 256 * 1024
"""Largest encoded job arguments accepted by enqueue (App(max_payload_bytes=...))."""

MAX_JSONL_LINE_BYTES = 4 * MAX_PAYLOAD_BYTES
"""Longest line `pgsteady enqueue --from-file` reads (task, key and arguments of one job, as JSON)."""

MAX_JSON_DEPTH = 64
"""Deepest nesting accepted in job arguments; deeper input is refused before encoding."""

MAX_KEY_BYTES = 1024
"""Longest idempotency key (UTF-8 bytes); a btree index row holds at most ~2.7 kB."""

MAX_QUEUE_NAME_BYTES = 200
"""Longest queue name (UTF-8 bytes); it is the payload of every wake-up notification."""

MAX_ERROR_CHARS = 2000
"""Longest error message stored per failed attempt; the rest is cut (a huge message must not fail the write)."""

MAX_TRACEBACK_CHARS = 20_000
"""Longest traceback stored per failed attempt (its last part is kept)."""

# Permissions ---------------------------------------------------------------

EMBEDDED_APP_ROLE = "pgsteady"
"""The ordinary role (no SUPERUSER, CREATEDB, CREATEROLE) that the embedded server's DSN uses; it owns the database."""

# Secrets -------------------------------------------------------------------

SECRET_KEY_PATTERN = r"pass(word|wd)?|secret|token|api[_-]?key|auth(orization)?|cookie|session|credential|private[_-]?key"
"""Keys whose values are masked when job arguments or event data are shown."""

MASK = "••••••"

# Permissions: what the SQL of a change file may do ------------------------

CHANGE_FILE_LEXING = {
    "standard_conforming_strings": "on",  # a backslash in '...' is a plain character, as pglast reads it
    "backslash_quote": "off",  # \' is never a quote, in any string
}
"""Session settings pinned wherever change-file SQL runs (pgsteady.indexes.sandbox)."""

CHANGE_QUERY_DENIED_FUNCTIONS = frozenset({
    "pg_terminate_backend", "pg_cancel_backend", "pg_signal_backend", "pg_reload_conf", "pg_rotate_logfile",
    "pg_promote", "pg_switch_wal", "pg_create_restore_point", "pg_logical_emit_message", "pg_notify",
    "set_config", "pg_sleep", "pg_sleep_for", "pg_sleep_until", "pg_read_file", "pg_read_binary_file",
    "pg_stat_file", "pg_file_write", "pg_import_system_collations", "query_to_xml", "query_to_xmlschema",
    "query_to_xml_and_xmlschema", "cursor_to_xml", "cursor_to_xmlschema", "table_to_xml",
    "table_to_xml_and_xmlschema", "schema_to_xml", "schema_to_xml_and_xmlschema", "database_to_xml",
    "database_to_xml_and_xmlschema", "pg_stat_reset", "pg_stat_statements_reset", "lo_import", "lo_export",
    "lo_unlink", "lo_create", "lo_from_bytea", "lo_put", "txid_current", "pg_current_xact_id",
})
"""Functions a change file's representative query may not call (they act outside its read-only transaction)."""

CHANGE_QUERY_DENIED_PREFIXES = ("dblink", "pg_advisory", "pg_try_advisory", "pg_ls_", "pg_stat_reset", "pg_backup_",
                                "pg_replication_", "pg_drop_replication", "pg_create_", "pg_copy_",
                                "pg_wal_replay_")
"""Name prefixes of the same kind of functions (whole families: dblink_exec, pg_advisory_lock, ...)."""

# Metrics server (`pgsteady metrics`) and dashboard -------------------------

METRICS_MAX_CONNECTIONS = 32
"""Connections the metrics server serves at once; more are refused at once (closed)."""

METRICS_IDLE_TIMEOUT = 10.0
"""Seconds the metrics server waits for a request's bytes before it closes the connection."""

DASHBOARD_HOST = "127.0.0.1"
"""Where the dashboard listens by default; any other address needs authentication configured."""

DASHBOARD_MAX_BODY_BYTES = 64 * 1024
"""Largest request body the dashboard reads (its forms are small); larger ones get 413."""

DASHBOARD_SESSION_SECONDS = 8 * 3600
"""How long a dashboard login lasts (signed session cookie, HttpOnly, SameSite=Strict)."""

DASHBOARD_MASKED_KEYS = SECRET_KEY_PATTERN
"""Keys whose values the dashboard masks in job arguments, checkpoints and event data
(pgsteady dashboard --mask-keys REGEX or PGSTEADY_DASHBOARD_MASK_KEYS)."""

# CDN cache and purges (pgsteady/cache) ------------------------------------

PURGE_TOKEN_ENV = {"fastly": "PGSTEADY_FASTLY_TOKEN", "cloudflare": "PGSTEADY_CLOUDFLARE_TOKEN"}
"""Environment variables the CDN purge adapters read their API tokens from (never from job arguments)."""

PURGE_HTTP_TIMEOUT = 10.0
"""Seconds a purge request to nginx, Varnish or a CDN API may take before the attempt fails and is retried."""

PURGE_MAX_RETRY_AFTER = 30.0
"""Longest Retry-After (seconds) a purge attempt waits out itself; a longer one fails the attempt into the job's backoff."""

PURGE_RESPONSE_LOG_BYTES = 500
"""How much of a purge response body is kept in the job history."""

PURGE_FROM = ("127.0.0.1", "::1")
"""Addresses the compiled nginx/Varnish configuration accepts PURGE/BAN requests from."""

CACHE_TEST_START_TIMEOUT = 15.0
"""Seconds `cache test` waits for its private nginx or varnishd to accept connections."""

PROBE_TIMEOUT = 10.0
"""Seconds `cache probe` waits for each live page."""

PROBE_MAX_BYTES = 1 << 20
"""Most of a page body `cache probe` reads (headers are what it needs)."""

# Read-only sessions (--read-dsn, database.connect(..., read_only=True)) ----------

READ_ONLY_SESSION = {"default_transaction_read_only": "on"}
"""Set on every --read-dsn session: PostgreSQL refuses any write in it, even on a primary named by mistake."""

READ_STATEMENT_TIMEOUT = 60.0
"""Seconds one statement of a --read-dsn session may run (PGSTEADY_READ_STATEMENT_TIMEOUT; 0: no limit)."""

READ_STATEMENT_TIMEOUT_ENV = "PGSTEADY_READ_STATEMENT_TIMEOUT"


def read_session_settings(environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The session settings of a --read-dsn session (topology.Link applies them, whatever the pooler)."""
    raw = environ.get(READ_STATEMENT_TIMEOUT_ENV, "").strip()
    seconds = READ_STATEMENT_TIMEOUT
    if raw:
        try:
            seconds = float(raw)
        except ValueError:
            seconds = -1.0
        if not math.isfinite(seconds) or seconds < 0:
            from ..errors import ConfigError

            raise ConfigError(f"{READ_STATEMENT_TIMEOUT_ENV}={raw!r} is not a number of seconds; "
                              f"use e.g. {READ_STATEMENT_TIMEOUT:g} (0: no limit)")
    return {**READ_ONLY_SESSION, "statement_timeout": f"{int(seconds * 1000)}ms"}


SETTINGS: tuple[Setting, ...] = (
    Setting("HSTS max-age the security check accepts", HSTS_MIN_MAX_AGE, "headers",
            "A shorter Strict-Transport-Security lets a browser fall back to plain HTTP soon after each visit."),
    Setting("pgsteady security check --sample", SECURITY_CHECK_SAMPLE, "secrets",
            "The secrets check reads the keys (never the values) of this many newest jobs and recent events: "
            "enough to see a habit, bounded so the check stays cheap on a large table."),
    Setting("embedded server app role", EMBEDDED_APP_ROLE, "permissions",
            "The App and every task on the embedded server run as an ordinary role that owns its database, "
            "not as the superuser postgres, which could run programs (COPY ... TO PROGRAM) as the server's OS user."),
    Setting("App(max_payload_bytes=...)", MAX_PAYLOAD_BYTES, "upload limits",
            "Job arguments live in a row that every claim reads; a large payload slows every worker and can fill the table."),
    Setting("longest JSONL line of enqueue --from-file", MAX_JSONL_LINE_BYTES, "upload limits",
            "A file users hand us is read line by line; a line longer than any job could be is refused with its "
            "number before anything is written, instead of being parsed."),
    Setting("max JSON depth of job arguments", MAX_JSON_DEPTH, "upload limits",
            "Deeply nested JSON can exhaust the recursion of encoders and decoders on the way in and out."),
    Setting("max idempotency key bytes", MAX_KEY_BYTES, "upload limits",
            "Keys live in a unique btree index; a key past the index row limit would fail the insert with a database error."),
    Setting("max queue name bytes", MAX_QUEUE_NAME_BYTES, "upload limits",
            "The queue name is the payload of the wake-up NOTIFY (under 8,000 bytes) and is shown in every listing."),
    Setting("max stored error characters", MAX_ERROR_CHARS, "upload limits",
            "A task's exception text is stored with the job; a huge one must be cut, not fail the failure write."),
    Setting("max stored traceback characters", MAX_TRACEBACK_CHARS, "upload limits",
            "Tracebacks are stored per attempt; the last part is kept, where the error is."),
    Setting("PGSTEADY_SECRET_KEYS", SECRET_KEY_PATTERN, "secrets",
            "Values of keys that look like secrets are masked wherever pgsteady shows job arguments or event data."),
    Setting("lexing of change-file SQL", CHANGE_FILE_LEXING, "permissions",
            "With standard_conforming_strings off the server reads 'x\\' differently from the parser that checked the "
            "text, and SQL hidden in a string literal would run; pinned on every session that runs change-file SQL."),
    Setting("functions a change query may not call", sorted(CHANGE_QUERY_DENIED_FUNCTIONS), "permissions",
            "Representative queries run under EXPLAIN ANALYZE in a READ ONLY transaction, which does not stop "
            "functions that signal backends, open connections, run SQL text, read files or take locks."),
    Setting("function families a change query may not call", CHANGE_QUERY_DENIED_PREFIXES, "permissions",
            "The same, for whole families (dblink_*, pg_advisory_*, pg_ls_*, ...)."),
    Setting("pgsteady metrics: connections at once", METRICS_MAX_CONNECTIONS, "upload limits",
            "One thread per connection without a bound let 300 idle clients hold 301 threads; past the bound a "
            "connection is closed at once."),
    Setting("pgsteady metrics: idle timeout (seconds)", METRICS_IDLE_TIMEOUT, "upload limits",
            "A client that opens a connection and sends nothing would hold a slot forever."),
    Setting("pgsteady dashboard --host", DASHBOARD_HOST, "permissions",
            "Loopback by default; on any other address the dashboard refuses to start without a password or token."),
    Setting("dashboard request body limit (bytes)", DASHBOARD_MAX_BODY_BYTES, "upload limits",
            "Its forms are a few fields; a larger body is refused with 413 before it is read whole."),
    Setting("dashboard session lifetime (seconds; --session-hours)", DASHBOARD_SESSION_SECONDS, "headers",
            "Login sessions are signed cookies (HttpOnly, SameSite=Strict) that expire after this many seconds."),
    Setting("PGSTEADY_DASHBOARD_MASK_KEYS", DASHBOARD_MASKED_KEYS, "secrets",
            "The dashboard masks the values of these keys in job arguments, checkpoints and event data."),
    Setting("CDN purge token variables (adapter token_env=)", ", ".join(PURGE_TOKEN_ENV.values()), "secrets",
            "CDN API tokens come from the environment of the worker, never from job arguments, so they are not stored or shown."),
    Setting("cdn purge HTTP timeout", PURGE_HTTP_TIMEOUT, "upload limits",
            "A hanging CDN API must not hold a worker slot forever; the attempt fails and the job retries with backoff."),
    Setting("cdn purge longest Retry-After waited in an attempt", PURGE_MAX_RETRY_AFTER, "upload limits",
            "A provider asking us to wait longer than this gets the job's backoff instead of a blocked worker slot."),
    Setting("cdn purge response kept in the job history", PURGE_RESPONSE_LOG_BYTES, "logging",
            "Enough of a provider's answer to debug a purge, not a whole error page in every event row."),
    Setting("cache compile --purge-from", PURGE_FROM, "permissions",
            "Only these addresses may PURGE/BAN through the generated proxy configuration; anyone else could empty the cache."),
    Setting("cache test proxy start timeout", CACHE_TEST_START_TIMEOUT, "upload limits",
            "A proxy that never starts must fail the test run with its error, not hang it."),
    Setting("cache probe timeout", PROBE_TIMEOUT, "upload limits",
            "A slow live page must not hang a probe run."),
    Setting("cache probe body limit", PROBE_MAX_BYTES, "upload limits",
            "A probe reads headers; a huge or endless body is cut off."),
    Setting("--read-dsn sessions", READ_ONLY_SESSION, "permissions",
            "status, jobs and indexes check read there and must write nothing, even when the DSN names a primary; "
            "every transaction of the session is read-only."),
    Setting("PGSTEADY_READ_STATEMENT_TIMEOUT (seconds)", READ_STATEMENT_TIMEOUT, "upload limits",
            "A read of a replica that hangs (a lock, a replication conflict wait, a huge table) must end with an "
            "error instead of holding the command and a replica backend."),
)


def secret_key_re(pattern: str | None = None) -> re.Pattern[str]:
    return re.compile(pattern or SECRET_KEY_PATTERN, re.IGNORECASE)


def mask_secrets(value: Any, pattern: re.Pattern[str] | None = None, _depth: int = 0) -> Any:
    """A copy of `value` (decoded JSON) with the values of secret-looking keys masked.

    Nested mappings and lists are walked; anything deeper than MAX_JSON_DEPTH
    is masked whole rather than walked, so hostile input cannot exhaust the stack.
    """
    rx = pattern or secret_key_re()
    if _depth > MAX_JSON_DEPTH:
        return MASK
    if isinstance(value, Mapping):
        return {k: (MASK if isinstance(k, str) and rx.search(k) else mask_secrets(v, rx, _depth + 1))
                for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, rx, _depth + 1) for v in value]
    return value
