"""Named SQL queries, loaded once from ``sql/*.sql``.

Each query in a file starts with a header line ``-- name: claim_jobs``; the
text up to the next header is the query. Comments stay in the files, for
readers: they are dropped from the text sent to the server (a ``%(limit)s``
in a comment would otherwise become a placeholder). ``{schema}`` in the text
is replaced by the quoted schema name through ``psycopg.sql.Identifier`` and
the result is cached per schema, so the hot path passes a plain string and
its parameters (always by name) to psycopg, which can prepare it.

A name starting with ``_`` is a fragment, not a query: other queries of the
same files include it as ``{_name}``. The claim UPDATE is one, so that both
claim queries share one text (see sql/attempts.sql).

This is the one loader of the package: the index checks' files
(pgsteady/indexes/sql) are read with ``parse`` too.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from types import MappingProxyType
from typing import Mapping

from psycopg import sql

from .errors import ConfigError
from .notifications import MAX_SCHEMA_LEN

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]*$")
_FRAGMENT = re.compile(r"\{(_\w+)\}")
# By table (each file's first lines say what it owns); a name is defined once
# across all of them, so callers name a query and never a file.
QUERY_FILES = ("jobs.sql", "attempts.sql", "events.sql", "workers.sql", "queues.sql", "schedules.sql",
               "leader.sql", "monitoring.sql", "changes.sql", "topology.sql")


def validate_schema(schema: str) -> str:
    # Restricting schema names keeps them safe inside the plpgsql bodies of
    # the migrations as well as in the queries, and avoids quoting surprises.
    # At most MAX_SCHEMA_LEN characters: the notification channels are the
    # schema name plus a suffix, and a channel is an identifier of 63 bytes.
    if not isinstance(schema, str) or not _SCHEMA_NAME.match(schema) or len(schema) > MAX_SCHEMA_LEN:
        raise ConfigError(
            f"schema name {schema!r} is not allowed; use lower-case letters, digits and _ "
            f"(starting with a letter or _), at most {MAX_SCHEMA_LEN} characters"
        )
    return schema


def strip_comments(line: str) -> str:
    """The line without its ``--`` comment (a ``--`` inside a quoted string stays)."""
    if "--" not in line:
        return line
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif line.startswith("--", i):
            return line[:i].rstrip()
    return line


def parse(text: str) -> dict[str, str]:
    """Split a .sql file into {name: query} by its ``-- name:`` headers,
    without comments; text before the first header is the file's preamble."""
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header = _HEADER.match(line.strip())
        if header:
            name = header.group(1)
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice")
            current = queries[name] = []
        elif current is not None:
            code = strip_comments(line)
            if code.strip():
                current.append(code)
    return {name: "\n".join(lines).strip().rstrip(";").rstrip() for name, lines in queries.items()}


def render(text: str, schema: str, fragments: Mapping[str, str] | None = None) -> str:
    """Put the quoted schema name (and any ``{_fragment}``) into a query or migration."""
    parts = {}
    for name in _FRAGMENT.findall(text):
        if not fragments or name not in fragments:
            raise ValueError(f"fragment {{{name}}} is not defined")
        parts[name] = sql.SQL(render(fragments[name], schema, fragments))
    return sql.SQL(text).format(schema=sql.Identifier(validate_schema(schema)), **parts).as_string()


@functools.cache
def _raw() -> Mapping[str, str]:
    base = resources.files("pgsteady") / "sql"
    queries: dict[str, str] = {}
    for filename in QUERY_FILES:
        for name, body in parse((base / filename).read_text()).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined in two files")
            queries[name] = body
    return MappingProxyType(queries)


class Queries:
    """The named queries for one schema, as attributes: ``q.claim_jobs``."""

    def __init__(self, schema: str) -> None:
        self.schema = validate_schema(schema)
        raw = _raw()
        for name, body in raw.items():
            if not name.startswith("_"):
                setattr(self, name, render(body, schema, raw))


@functools.cache
def for_schema(schema: str) -> Queries:
    return Queries(schema)
