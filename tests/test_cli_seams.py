"""The CLI's one way to open a connection and one way to answer "no".

Every command opens its connection through ``cli.base.connect(state, ...)``
(read-only commands with ``reading=True``, which is where --read-dsn is
honoured) and answers "no" through ``cli.base.answer_no()``. The first test
reads the modules of pgsteady/cli so that a second way cannot come back;
the others check the behaviour of the commands that were moved onto them.
"""

from __future__ import annotations

import ast
import json
from pathlib import Path

import psycopg
import pytest

from .helpers import ROOT
from .test_cli import one_line_error, pgsteady

CLI = ROOT / "pgsteady" / "cli"
UNREACHABLE = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=2"


def own_ways(source: str) -> list[str]:
    """What a CLI module does that only cli/base.py may do: open a connection
    (psycopg.connect, database.connect, a ``connect`` imported from either),
    pick the read DSN itself, or exit 1 by hand."""
    tree = ast.parse(source)
    found = []
    imported_connect = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[-1] in ("database", "psycopg"):
            imported_connect |= {a.asname or a.name for a in node.names if a.name in ("connect", "connect_async")}
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
        one = bool(node.args) and isinstance(node.args[0], ast.Constant) and node.args[0].value == 1
        if name in ("connect", "connect_async") and owner in ("psycopg", "database", "AsyncConnection", "Connection"):
            found.append(f"line {node.lineno}: {owner}.{name}()")
        elif isinstance(f, ast.Name) and name in imported_connect:
            found.append(f"line {node.lineno}: {name}() imported from the database layer")
        elif name == "reading_dsn":
            found.append(f"line {node.lineno}: reading_dsn() (use connect(state, reading=True))")
        elif name in ("exit", "SystemExit", "Exit", "_exit") and one:
            found.append(f"line {node.lineno}: {name}(1) (use answer_no())")
    return found


def test_the_checker_finds_each_other_way():
    bad = (
        "import sys, psycopg, click\n"
        "from ..database import connect as open_db\n"
        "def f(ctx, state):\n"
        "    psycopg.connect('x')\n"
        "    open_db(state.resolved_dsn())\n"
        "    state.reading_dsn()\n"
        "    sys.exit(1)\n"
        "    ctx.exit(1)\n"
        "    raise SystemExit(1)\n"
        "    raise click.exceptions.Exit(1)\n"
    )
    assert len(own_ways(bad)) == 7, own_ways(bad)
    good = "from .base import answer_no, connect\ndef f(state):\n    connect(state, reading=True)\n    answer_no()\n"
    assert own_ways(good) == []


def test_no_cli_module_opens_a_connection_or_answers_no_by_itself():
    modules = sorted(p for p in CLI.glob("*.py") if p.name != "base.py")
    assert len(modules) > 10  # the glob found the package
    offences = {p.name: own_ways(p.read_text()) for p in modules}
    assert {name: found for name, found in offences.items() if found} == {}


def test_status_reads_the_read_dsn_and_only_it(dsn):
    r = pgsteady("--dsn", UNREACHABLE, "--read-dsn", dsn, "status", "--json")
    assert json.loads(r.stdout)["up"]["database"]["reachable"] is True, r.stderr
    r = pgsteady("--dsn", dsn, "--read-dsn", UNREACHABLE, "status", "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["up"]["database"]["reachable"] is False, r.stderr


def test_status_of_an_unmigrated_database_is_down_not_an_error(empty_dsn):
    r = pgsteady("status", "--json", dsn=empty_dsn)
    out = json.loads(r.stdout)
    assert r.returncode == 2 and out["health"] == "down" and out["up"]["schema"]["current"] is False, r.stderr


def test_indexes_check_reads_the_read_dsn(dsn):
    assert pgsteady("indexes", "check", "--json", "--fail-on", "error", dsn=dsn).returncode == 0
    one_line_error(pgsteady("--read-dsn", UNREACHABLE, "indexes", "check", "--json", dsn=dsn), "127.0.0.1")


@pytest.mark.parametrize("command", [["queues", "pause", "mail"], ["change", "list"], ["deploy", "list"]])
def test_writing_and_change_commands_never_open_the_read_dsn(dsn, command):
    r = pgsteady("--read-dsn", UNREACHABLE, *command, dsn=dsn)
    assert r.returncode == 0, r.stderr


def test_a_queue_paused_from_the_cli_is_paused(dsn):
    assert pgsteady("queues", "pause", "mail", dsn=dsn).returncode == 0
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT paused FROM pgsteady.queues WHERE queue = 'mail'").fetchone() == (True,)


def test_change_commands_on_an_unmigrated_database_say_to_migrate(empty_dsn):
    one_line_error(pgsteady("change", "list", dsn=empty_dsn), "run `pgsteady migrate`")
    one_line_error(pgsteady("change", "cleanup", dsn=empty_dsn), "run `pgsteady migrate`")


def test_a_refused_lint_answers_no(tmp_path: Path):
    sql = tmp_path / "0001_add.sql"
    sql.write_text("CREATE INDEX events_kind_idx ON events (kind);\n")
    r = pgsteady("change", "lint", str(sql), "--offline")
    assert r.returncode == 1 and "refuse" in r.stdout, r.stdout + r.stderr
