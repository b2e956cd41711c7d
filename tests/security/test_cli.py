"""`pgsteady security ...` as a user meets it: exit codes, --fail-on, --json, one-line errors."""

from __future__ import annotations

import json
import logging
import re

import psycopg
import pytest

from pgsteady.cli import main
from pgsteady.database import scrub
from pgsteady.security import runner


class Redacting(logging.Formatter):
    def format(self, record):
        return scrub(record.getMessage()).replace("\n", "\\n")


def run(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
        raise SystemExit(0)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_hardened_setup_exits_zero_at_fail_and_one_at_warn(capsys, roles, dsn, monkeypatch, tmp_path):
    kinds = roles.least_privilege(dsn)
    monkeypatch.setenv("HOME", str(tmp_path))
    # Judge a formatter that redacts, so the answer depends on the database alone.
    monkeypatch.setattr(runner, "FORMATTERS", {"text": Redacting})
    args = ["--dsn", kinds["worker"], "security", "check", "--no-processes", "--roles-prefix", roles.prefix]
    code, out, err = run(capsys, *args, "--json")
    data = json.loads(out)
    assert code == 0, [r for r in data["results"] if r["status"] == "fail"]
    assert data["summary"]["fail"] == 0 and data["summary"]["warn"] >= 1
    assert data["format"] == 1 and data["role"] == f"{roles.prefix}_worker"
    assert set(data["results"][0]) == {"check", "area", "status", "subject", "message", "fix", "evidence"}
    code, _, _ = run(capsys, *args, "--fail-on", "warn", "--json")
    assert code == 1


def test_weak_setup_exits_one_and_the_table_names_the_problem_and_the_fix(capsys, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA pgsteady TO PUBLIC")
    code, out, _ = run(capsys, "--dsn", dsn, "security", "check", "--no-processes")
    assert code == 1
    assert "FAIL" in out and "public_privileges" in out and "REVOKE" in out


@pytest.mark.parametrize("args, needle", [
    (["--url", "file:///etc/passwd"], "is not an http:// or https:// URL"),
    (["--url", "http://127.0.0.1:9/"], "cannot fetch"),
    (["--env-file", "/nonexistent/app.env"], "no such file"),
    (["--sample", "0"], "--sample 0 is out of range"),
    (["--roles-prefix", "Bad-Prefix"], "role prefix"),
    (["--fail-on", "info"], "Invalid value for '--fail-on'"),
])
def test_bad_input_is_one_line_and_exit_two(capsys, dsn, args, needle):
    code, _, err = run(capsys, "--dsn", dsn, "security", "check", "--no-processes", *args)
    assert code == 2
    assert needle in err
    assert len([line for line in err.strip().splitlines() if line.strip() and not line.startswith(("Usage", "Try"))]) == 1


def test_unreachable_database_is_exit_two_without_the_password(capsys):
    code, _, err = run(capsys, "--dsn", "postgresql://app:topsecret@127.0.0.1:9/db?connect_timeout=2",
                       "security", "check", "--no-processes")
    assert code == 2 and "cannot connect" in err and "topsecret" not in err


def test_help_explains_the_checks_exit_codes_and_examples(capsys):
    code, out, _ = run(capsys, "security", "check", "--help")
    assert code == 0
    for words in ("--fail-on", "--url", "--env-file", "--json", "Exit codes", "Examples:", "pgsteady security check --url"):
        assert words in out


def test_settings_lists_every_row_with_json(capsys):
    from pgsteady.security.settings import SETTINGS

    code, out, _ = run(capsys, "security", "settings", "--json")
    assert code == 0
    assert [row["name"] for row in json.loads(out)] == [s.name for s in SETTINGS]


def test_stored_markup_and_terminal_escapes_are_shown_inert(capsys, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pgsteady.jobs (queue, task, args, max_attempts) VALUES "
                     "('default', %s, '{\"password\": \"x\"}', 1)", ["[bold red]evil\x1b]0;pwned\x07"])
    code, out, _ = run(capsys, "--dsn", dsn, "security", "check", "--no-processes", "-v")
    assert code == 1 and "\x1b]0;" not in out and "\x07" not in out
    assert "[bold red]evil\\x1b]0;pwned\\x07" in re.sub(r"\s+", " ", out)  # markup shown as text, escapes spelled out
