"""The named queries: one loader, files grouped by table, each name defined once, each used."""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

import pytest

from pgsteady import queries
from pgsteady.indexes import queries as index_queries

SQL = Path(resources.files("pgsteady")) / "sql"
INDEX_SQL = Path(resources.files("pgsteady")) / "indexes" / "sql"


def _definitions() -> dict[str, list[str]]:
    """Every query name -> the files that define it, over both query folders."""
    found: dict[str, list[str]] = {}
    for path in [SQL / name for name in queries.QUERY_FILES] + sorted(INDEX_SQL.glob("*.sql")):
        for name in queries.parse(path.read_text()):
            found.setdefault(name, []).append(f"{path.parent.name}/{path.name}")
    return found


def test_every_query_name_is_defined_in_one_file_only():
    """Callers name a query, never a file: moving a query between files must
    not change which text a name means, so no name may be defined twice,
    neither in two files of one folder nor once in each folder."""
    found = _definitions()
    assert len(found) > 100
    twice = {name: files for name, files in found.items() if len(files) > 1}
    assert not twice, twice


def test_every_query_file_is_loaded_and_says_what_it_owns():
    loaded = set(queries.QUERY_FILES)
    on_disk = {p.name for p in SQL.glob("*.sql")} - {"schema.sql"}
    assert loaded == on_disk, "a .sql file that QUERY_FILES does not list is never loaded"
    for path in [SQL / name for name in queries.QUERY_FILES] + sorted(INDEX_SQL.glob("*.sql")):
        first = path.read_text().splitlines()[0]
        assert first.startswith("-- ") and not re.match(r"--\s*name:", first), f"{path.name} has no header comment"


def test_a_name_defined_in_two_files_is_refused(tmp_path):
    (tmp_path / "a.sql").write_text("-- a\n-- name: same\nSELECT 1;\n")
    (tmp_path / "b.sql").write_text("-- b\n-- name: same\nSELECT 2;\n")
    with pytest.raises(ValueError, match="defined in two files"):
        index_queries.load(tmp_path)
    with pytest.raises(ValueError, match="defined twice"):
        queries.parse("-- name: x\nSELECT 1;\n-- name: x\nSELECT 2;\n")


def test_job_table_statements_live_in_the_files_of_their_tables():
    """Statements that write the jobs table live in jobs.sql (a job's row) or
    attempts.sql (its running attempt), or in the file of the other table a
    statement is about (schedules that enqueue, the counter pass that reads);
    no file is named after a caller any more."""
    writes_jobs = re.compile(r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM|COPY)\s+\{schema\}\.jobs\b", re.I)
    homes = {"jobs.sql", "attempts.sql", "schedules.sql"}
    for name in queries.QUERY_FILES:
        for query, body in queries.parse((SQL / name).read_text()).items():
            if writes_jobs.search(body):
                assert name in homes, f"{query} writes the jobs table from {name}"
    assert not {"worker.sql", "admin.sql", "maintenance.sql", "dashboard.sql"} & set(queries.QUERY_FILES)


PACKAGE = Path(resources.files("pgsteady"))


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
    assert {f.name for f in files} >= set(queries.QUERY_FILES)
    texts = [f.read_text() for f in files]
    named = {name: body for text in texts for name, body in queries.parse(text).items()}
    assert len(named) > 100
    sources = [p.read_text() for p in PACKAGE.rglob("*.py")]
    assert unused(named, sources, texts) == []
