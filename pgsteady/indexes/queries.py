"""The named SQL of the index checks, read once from ``sql/*.sql`` at import.

A file holds several queries, each introduced by a ``-- name: query_name``
line. Comment lines are dropped from the text sent to the server: they may
mention ``%(param)s`` placeholders, which psycopg would otherwise try to fill.
"""

from __future__ import annotations

import re
from pathlib import Path

_HEADER = re.compile(r"^--\s*name:\s*(\w+)\s*$")


def parse(text: str) -> dict[str, str]:
    """Split one .sql file into {name: query}; text before the first header is a preamble."""
    queries: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in text.splitlines():
        header = _HEADER.match(line.strip())
        if header:
            name = header.group(1)
            if name in queries:
                raise ValueError(f"query {name!r} is defined twice")
            current = queries[name] = []
        elif current is not None and not line.strip().startswith("--"):
            current.append(line)
    return {name: "\n".join(lines).strip().rstrip(";") for name, lines in queries.items()}


def load(folder: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(folder.glob("*.sql")):
        for name, query in parse(path.read_text(encoding="utf-8")).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined in two files ({path.name})")
            queries[name] = query
    return queries


QUERIES = load(Path(__file__).with_name("sql"))
