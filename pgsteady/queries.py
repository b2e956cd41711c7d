"""Named SQL queries, loaded once from ``sql/*.sql``.

Each query in a file starts with a header line ``-- name: claim_jobs``; the
text up to the next header is the query. ``{schema}`` in the text is replaced
by the quoted schema name through ``psycopg.sql.Identifier`` and the result is
cached per schema, so the hot path passes a plain string and its parameters
(always by name) to psycopg, which can prepare it.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from types import MappingProxyType
from typing import Mapping

from psycopg import sql

from .errors import ConfigError

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$", re.MULTILINE)
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
QUERY_FILES = ("jobs.sql", "worker.sql", "admin.sql", "maintenance.sql", "monitoring.sql", "changes.sql",
               "migration_checks.sql")


def validate_schema(schema: str) -> str:
    # Restricting schema names keeps them safe inside the plpgsql bodies of
    # the migrations as well as in the queries, and avoids quoting surprises.
    if not _SCHEMA_NAME.match(schema or ""):
        raise ConfigError(
            f"schema name {schema!r} is not allowed; use lower-case letters, digits and _ "
            "(starting with a letter or _), at most 63 characters"
        )
    return schema


def parse(text: str) -> dict[str, str]:
    """Split a .sql file into {name: query} by its ``-- name:`` headers."""
    parts = _HEADER.split(text)
    queries = {}
    for name, body in zip(parts[1::2], parts[2::2]):
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = body.strip().rstrip(";")
    return queries


def render(text: str, schema: str) -> str:
    """Put the quoted schema name into a query or migration."""
    return sql.SQL(text).format(schema=sql.Identifier(validate_schema(schema))).as_string()


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
        for name, body in _raw().items():
            setattr(self, name, render(body, schema))


@functools.cache
def for_schema(schema: str) -> Queries:
    return Queries(schema)
