"""Every named query is used: a query nobody runs is a second copy waiting to drift."""

from __future__ import annotations

import ast
from pathlib import Path

from pgsteady.queries import QUERY_FILES, parse

from .helpers import ROOT

PACKAGE = ROOT / "pgsteady"


def _sql_files() -> list[Path]:
    return sorted((PACKAGE / "sql").glob("*.sql")) + sorted((PACKAGE / "indexes" / "sql").glob("*.sql"))


def references(sources: list[str]) -> set[str]:
    """The names Python code can reach a query by: ``q.name`` (an attribute of
    anything but an imported module, so ``queues.list_queues()`` the function
    does not count for a query of that name), ``QUERIES["name"]`` and
    ``getattr(q, "name")`` (string constants)."""
    found: set[str] = set()
    for source in sources:
        tree = ast.parse(source)
        modules = {(a.asname or a.name).split(".")[0] for node in ast.walk(tree)
                   if isinstance(node, (ast.Import, ast.ImportFrom)) for a in node.names}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and not (isinstance(node.value, ast.Name) and node.value.id in modules):
                found.add(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                found.add(node.value)
    return found


def unused(queries: dict[str, str], sources: list[str], sql_texts: list[str]) -> list[str]:
    used = references(sources)
    return sorted(name for name in queries
                  if (not any("{" + name + "}" in text for text in sql_texts) if name.startswith("_")
                      else name not in used))


def test_the_check_sees_a_query_reached_only_through_a_function_of_the_same_name_as_unused():
    queries = {"list_things": "SELECT 1", "count_things": "SELECT 2", "_frag": "x", "uses": "{_frag}"}
    sources = ["from . import things\nthings.list_things(conn)\nconn.execute(q.count_things)\nq.uses\n"]
    assert unused(queries, sources, ["{_frag}"]) == ["list_things"]
    assert unused(queries, sources, []) == ["_frag", "list_things"]


def test_every_named_query_is_used_somewhere_in_the_package():
    files = _sql_files()
    assert {f.name for f in files} >= set(QUERY_FILES)
    texts = [f.read_text() for f in files]
    queries = {name: body for text in texts for name, body in parse(text).items()}
    assert len(queries) > 100
    sources = [p.read_text() for p in PACKAGE.rglob("*.py")]
    assert unused(queries, sources, texts) == []
