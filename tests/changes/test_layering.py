"""The job core does not depend on the change workflow: the dependency runs one way."""

from __future__ import annotations

import ast
import re
import subprocess
import sys

from ..helpers import ROOT


def test_importing_pgsteady_and_creating_an_app_imports_neither_the_change_workflow_nor_pglast():
    code = ("import sys, pgsteady\n"
            "app = pgsteady.App(dsn='postgresql://nobody@127.0.0.1:1/none')\n"
            "assert 'pgsteady.build_index' not in app.tasks, app.tasks\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'pglast' or m.startswith('pgsteady.changes'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout


def test_the_change_workflow_registers_the_build_task_where_builds_run():
    from pgsteady import App
    from pgsteady.changes import TASK, register
    from pgsteady.changes.tasks import serves_builds

    app = App(dsn="postgresql://nobody@127.0.0.1:1/none")
    register(app)
    register(app)  # once
    assert app.tasks[TASK].queue == "maintenance"
    assert serves_builds(None) and serves_builds(["default", "maintenance"]) and not serves_builds(["mail"])


# What reading the catalogue or the statistics views looks like in SQL text:
# a pg_ relation after FROM or JOIN, or a function that reads them.
CATALOGUE_READ = re.compile(
    r"\b(FROM|JOIN)\s+(pg_catalog\.)?pg_\w+|\binformation_schema\b|\bpg_stat_\w+"
    r"|\bpg_(relation_size|total_relation_size|indexes_size|relation_filenode|get_indexdef|get_expr"
    r"|blocking_pids|get_constraintdef)\s*\(|\bhypopg_\w+\s*\(|\bto_regclass\s*\(", re.IGNORECASE)
SQL_SHAPED = re.compile(r"\b(SELECT|FROM|JOIN|WITH)\b")  # upper case: prose says "from"


def _catalogue_reads_in_code(source: str) -> list[str]:
    """The string constants of a module that are SQL reading the catalogue."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL_SHAPED.search(node.value) and CATALOGUE_READ.search(node.value):
                found.append(node.value[:80])
    return found


def _queries_named(source: str) -> set[str]:
    """The named queries a module runs: ``q.name`` and ``self.q.name``."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute):
            owner = node.value
            if (isinstance(owner, ast.Name) and owner.id == "q") or (
                    isinstance(owner, ast.Attribute) and owner.attr == "q"):
                names.add(node.attr)
    return names


def test_the_change_workflow_reads_the_catalogue_only_through_the_one_reader():
    """pgsteady/changes holds no SQL that reads pg_catalog or pg_stat_*, and
    none of the named queries it runs does: every such read is a function of
    pgsteady/indexes/probes.py (or the checks' catalog.py), with its query in
    pgsteady/indexes/sql, so a probe exists once."""
    from pgsteady.indexes.queries import QUERIES
    from pgsteady.queries import _raw

    raw = _raw()
    offenders = []
    modules = sorted((ROOT / "pgsteady" / "changes").glob("*.py"))
    assert len(modules) > 20
    used: set[str] = set()
    for path in modules:
        source = path.read_text()
        offenders += [f"{path.name}: {text!r}" for text in _catalogue_reads_in_code(source)]
        used |= {name for name in _queries_named(source) if name in raw}
    assert {"get_change", "move_change", "job_outcome"} <= used  # the scan sees the workflow's queries
    offenders += [f"q.{name}" for name in sorted(used) if CATALOGUE_READ.search(raw[name])]
    assert not offenders, offenders
    # The detector itself: it sees the reads that moved to the one reader, and passes prose.
    for name in ("index_builds", "blockers", "table_facts", "extension", "write_counters", "hypopg_size",
                 "column_type", "backends"):
        assert CATALOGUE_READ.search(QUERIES[name]) and SQL_SHAPED.search(QUERIES[name]), name
    assert _catalogue_reads_in_code('x = "SELECT oid FROM pg_class"\ny = f"SELECT * FROM pg_locks WHERE {z}"') \
        and not _catalogue_reads_in_code('"""Reads pg_locks from a second connection."""')
    assert not CATALOGUE_READ.search(raw["take_build_slot"])  # the slot row is the workflow's own table
