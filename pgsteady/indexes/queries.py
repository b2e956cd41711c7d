"""The named SQL of the index checks, read once from ``sql/*.sql`` at import.

A file holds several queries, each introduced by a ``-- name: query_name``
line, parsed by pgsteady.queries.parse (comments are dropped from the text
sent to the server).
"""

from __future__ import annotations

from pathlib import Path

from ..queries import parse  # the package's one loader: headers, comments dropped


def load(folder: Path) -> dict[str, str]:
    queries: dict[str, str] = {}
    for path in sorted(folder.glob("*.sql")):
        for name, query in parse(path.read_text(encoding="utf-8")).items():
            if name in queries:
                raise ValueError(f"query {name!r} is defined in two files ({path.name})")
            queries[name] = query
    return queries


QUERIES = load(Path(__file__).with_name("sql"))
