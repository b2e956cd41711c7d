"""The command line as a user meets it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import base64
import json
import os
import random
import subprocess
import sys

import psycopg
import pytest

from pgsteady.migrations import latest_version

from .helpers import ROOT, scalar, states

APP = "tests.apps.ledger_app:app"


def pgsteady(*args: str, dsn: str | None = None, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    full_env.pop("PGSTEADY_APP", None)
    if dsn:
        full_env["PGSTEADY_DSN"] = dsn
    return subprocess.run([sys.executable, "-m", "pgsteady", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> None:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgsteady: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_enqueue_list_show_and_run_a_job(dsn):
    r = pgsteady("--app", APP, "enqueue", "sync_nap", "--args", '{"seconds": 0}', "--key", "k1", "--json", dsn=dsn)
    assert r.returncode == 0, r.stderr
    ref = json.loads(r.stdout)
    assert ref["created"] is True
    again = json.loads(pgsteady("--app", APP, "enqueue", "sync_nap", "--args", '{"seconds": 0}', "--key", "k1",
                                "--json", dsn=dsn).stdout)
    assert again == {**ref, "created": False}
    listed = json.loads(pgsteady("jobs", "list", "--json", "--state", "waiting", dsn=dsn).stdout)
    assert [j["id"] for j in listed] == [ref["id"]]
    r = pgsteady("--app", APP, "worker", "--until-idle", dsn=dsn)
    assert r.returncode == 0, r.stderr
    assert states(dsn) == {"succeeded": 1}
    shown = json.loads(pgsteady("jobs", "show", str(ref["id"]), "--json", dsn=dsn).stdout)
    assert shown["state"] == "succeeded" and shown["release"] == "proc-test"
    human = pgsteady("jobs", "show", str(ref["id"]), dsn=dsn)
    assert human.returncode == 0 and "succeeded" in human.stdout


def test_retry_and_cancel_by_hand_are_recorded(dsn):
    ref = json.loads(pgsteady("--app", APP, "enqueue", "nap", "--args", '{"seconds": 0}', "--at", "1h", "--json",
                              dsn=dsn).stdout)
    job_id = str(ref["id"])
    assert pgsteady("jobs", "cancel", job_id, dsn=dsn).stdout.strip() == f"job {job_id}: cancelled"
    one_line_error(pgsteady("jobs", "cancel", job_id, dsn=dsn), "is cancelled", "only waiting or running")
    assert pgsteady("jobs", "retry", job_id, dsn=dsn).returncode == 0
    assert states(dsn) == {"waiting": 1}
    kinds = [e["kind"] for e in json.loads(pgsteady("jobs", "show", job_id, "--json", dsn=dsn).stdout)["events"]]
    assert kinds == ["cancelled", "manual_retry"]
    one_line_error(pgsteady("jobs", "retry", job_id, dsn=dsn), "only failed or cancelled")
    one_line_error(pgsteady("jobs", "show", "999999", dsn=dsn), "no job with id 999999")


@pytest.mark.parametrize("args,needles", [
    (("--app", APP, "enqueue", "nop"), ("unknown task 'nop'", "did you mean 'nap'")),
    (("--app", APP, "enqueue", "nap", "--args", '{"seconds": '), ("--args is not valid JSON",)),
    (("--app", APP, "enqueue", "nap", "--args", "[1]"), ("must be a JSON object",)),
    (("enqueue", "nap"), ("needs your App", "--app")),
    (("--app", "tests.apps.nope:app", "enqueue", "nap"), ("cannot import module 'tests.apps.nope'",)),
    (("--app", "tests.apps.ledger_app", "enqueue", "nap"), ("not of the form module:attr",)),
])
def test_bad_input_is_one_line_and_stores_nothing(dsn, args, needles):
    one_line_error(pgsteady(*args, dsn=dsn), *needles)
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == 0


def test_passwords_never_appear_in_errors():
    secret = "hunter2-secret"
    r = pgsteady("jobs", "list", dsn=f"postgresql://app:{secret}@127.0.0.1:1/prod")
    one_line_error(r, "cannot connect to PostgreSQL at app@127.0.0.1:1/prod")
    assert secret not in r.stdout + r.stderr
    r = pgsteady("jobs", "list", dsn=f"host=127.0.0.1 port=1 user=app password={secret} dbname=prod")
    assert secret not in r.stdout + r.stderr and r.returncode == 2
    r = pgsteady("jobs", "list", dsn=f"postgresql://app:{secret}@h/db?nonsense=1")
    one_line_error(r, "not a valid PostgreSQL connection string")
    assert secret not in r.stderr


def test_commands_on_an_unmigrated_database_say_to_migrate(empty_dsn):
    one_line_error(pgsteady("jobs", "list", dsn=empty_dsn), "run `pgsteady migrate`")
    r = pgsteady("migrate", "--json", dsn=empty_dsn)
    assert r.returncode == 0 and json.loads(r.stdout)["applied"] == list(range(1, latest_version() + 1))
    assert pgsteady("jobs", "list", dsn=empty_dsn).returncode == 0


@pytest.mark.parametrize("command", [[], ["worker"], ["enqueue"], ["jobs", "list"], ["jobs", "show"], ["migrate"],
                                     ["demo"], ["db"]])
def test_every_command_has_help(command):
    r = pgsteady(*command, "--help")
    assert r.returncode == 0 and "Usage:" in r.stdout and len(r.stdout.splitlines()) > 3


# -- the connection options, wherever they are given ----------------------------------------------

CLI_APP = "tests.apps.cli_app:app"


def test_app_dsn_and_schema_are_accepted_after_the_command_name_too(dsn):
    r = pgsteady("enqueue", "nap", "--args", '{"seconds": 0}', "--app", APP, "--dsn", dsn, "--json")
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    r = pgsteady("jobs", "list", "--app", APP, "--dsn", dsn, "--json")
    assert r.returncode == 0, r.stderr
    assert [j["id"] for j in json.loads(r.stdout)] == [job_id]
    assert pgsteady("jobs", "show", str(job_id), "--dsn", dsn).returncode == 0
    # After the command it wins over the one before it.
    one_line_error(pgsteady("--schema", "pgsteady", "jobs", "list", "--schema", "elsewhere", dsn=dsn),
                   "'elsewhere' schema has not been created")


def test_dsn_with_a_password_on_the_command_line_gets_one_warning_line(dsn):
    secret = "pw-on-argv-9"
    r = pgsteady("jobs", "list", "--dsn", f"postgresql://app:{secret}@127.0.0.1:1/prod")
    warning, error = r.stderr.strip().splitlines()
    assert warning.startswith("pgsteady: warning: --dsn carries a password") and "~/.pgpass" in warning
    assert error.startswith("pgsteady: error: cannot connect") and secret not in r.stderr
    quiet = pgsteady("jobs", "list", dsn=f"postgresql://app:{secret}@127.0.0.1:1/prod")  # PGSTEADY_DSN: no warning
    assert "warning" not in quiet.stderr and secret not in quiet.stderr


# -- passwords in malformed DSNs ----------------------------------------------------------------


@pytest.mark.parametrize("template", [
    "postgresql://app:{pw}@host/db",
    "postgresql://app:{pw} tail@host/db",            # an unencoded space
    "postgresql://app:{pw}%zz@host/db",              # a bad % escape
    "postgresql://app:{pw}%00@host/db",              # an encoded NUL
    "postgresql://app:{pw}@more@host/db",            # an unencoded @
    "postgresql://app:{pw}@host:notaport/db",
    "postgresql://app@host/db?password={pw}%",
    "host=h password='{pw} dbname=x",                # an unterminated quote
    "host=h password={pw} nonsense=1",
])
def test_a_malformed_dsn_never_prints_its_password(template):
    secret = "Sekr1tPassw0rd"
    for dsn in (template.format(pw=secret),):
        r = pgsteady("jobs", "list", dsn=dsn)
        assert r.returncode == 2, r
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("pgsteady: error: ")
        assert secret not in r.stdout + r.stderr
        assert secret[2:-2] not in r.stderr


# -- untrusted text from the database -------------------------------------------------------------

HOSTILE = "[/x] [bold]b[/bold] \x1b[2J\x1b]0;owned\x07 \x9b31m \u202etxt.exe end"


def _no_escapes(text: str) -> None:
    assert not {"\x1b", "\x07", "\x9b", "\u202e"} & set(text)


def test_markup_and_terminal_escapes_stored_in_jobs_are_shown_inert(dsn):
    r = pgsteady("--app", APP, "enqueue", "nap", "--args", '{"seconds": 0}', "--queue", "[/x]", "--key", HOSTILE,
                 "--at", "1h", "--json", dsn=dsn)
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["id"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.jobs SET errors = jsonb_build_array(jsonb_build_object("
                     "'attempt', 1, 'error', %s::text)) WHERE id = %s", [HOSTILE, job_id])
    listed = pgsteady("jobs", "list", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    assert "[/x]" in listed.stdout and "[bold]b[/bold]" in listed.stdout
    _no_escapes(listed.stdout)
    shown = pgsteady("jobs", "show", str(job_id), dsn=dsn)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.count("[/x]") >= 3 and "\\x1b[2J" in shown.stdout  # queue, key, error; visible, inert
    _no_escapes(shown.stdout)


def test_jobs_show_prints_the_fields_of_log_lines_with_secrets_masked(dsn):
    ref = json.loads(pgsteady("--app", CLI_APP, "enqueue", "logs", "--args", '{"post_id": 7}', "--json",
                              dsn=dsn).stdout)
    assert pgsteady("--app", CLI_APP, "worker", "--until-idle", dsn=dsn).returncode == 0
    shown = pgsteady("jobs", "show", str(ref["id"]), dsn=dsn)
    line = next(ln for ln in shown.stdout.splitlines() if "imported" in ln)
    assert '"post_id": 7' in line and '"url": "https://example.test/p"' in line
    assert "hunter2-in-a-log" not in shown.stdout
    as_json = pgsteady("jobs", "show", str(ref["id"]), "--json", dsn=dsn).stdout
    assert "hunter2-in-a-log" not in as_json


def test_a_succeeded_job_shows_no_last_error_from_an_earlier_attempt(dsn):
    ref = json.loads(pgsteady("--app", CLI_APP, "enqueue", "flaky", "--json", dsn=dsn).stdout)
    for _ in range(5):  # --until-idle may stop while the retry waits out its backoff; run again until it ran
        assert pgsteady("--app", CLI_APP, "worker", "--until-idle", dsn=dsn).returncode == 0
        if states(dsn) == {"succeeded": 1}:
            break
    [row] = json.loads(pgsteady("jobs", "list", "--json", dsn=dsn).stdout)
    assert (row["id"], row["state"], row["attempt"], row["last_error"]) == (ref["id"], "succeeded", 2, None)
    assert "first attempt fails" not in pgsteady("jobs", "list", dsn=dsn).stdout
    # The history keeps it: `jobs show` still has the first attempt's error.
    assert "first attempt fails" in pgsteady("jobs", "show", str(ref["id"]), dsn=dsn).stdout


def test_enqueue_help_shows_task_names_as_they_are_registered(dsn):
    help_text = pgsteady("enqueue", "--help").stdout
    assert '"task": "myproject.jobs.import_post"' in help_text and '"task": "import_post"' not in help_text
    one_line_error(pgsteady("--app", CLI_APP, "enqueue", "import_post", dsn=dsn),
                   "unknown task 'import_post'", "tests.apps.cli_app.import_post")
    r = pgsteady("--app", CLI_APP, "enqueue", "tests.apps.cli_app.import_post", "--args", '{"post_id": 1}', dsn=dsn)
    assert r.returncode == 0, r.stderr


# -- bad input: one line, exit 2, nothing stored ------------------------------------------------------


LONG_KEY = base64.b64encode(random.Random(7).randbytes(7000)).decode()  # incompressible: over the index row limit


@pytest.mark.parametrize("args", [
    ('{"s": "\\ud800"}', None),                         # a lone surrogate
    ("[" * 5000 + "]" * 5000, None),                     # 5,000-deep JSON
    ('{"seconds": 0}', LONG_KEY),                        # a key over the index row limit
])
def test_hostile_enqueue_input_is_one_line_and_stores_nothing(dsn, args):
    payload, key = args
    extra = ("--key", key) if key else ()
    r = pgsteady("--app", APP, "enqueue", "nap", "--args", payload, *extra, dsn=dsn)
    one_line_error(r)
    assert "Traceback" not in r.stderr
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == 0


def test_queue_name_too_long_for_notify_is_one_line(dsn):
    r = pgsteady("--app", APP, "enqueue", "nap", "--args", '{"seconds": 0}', "--queue", "q" * 9000, dsn=dsn)
    one_line_error(r)
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == 0


def _jsonl(path, n_good: int, bad: str | None = None) -> str:
    lines = [json.dumps({"task": "nap", "args": {"seconds": 0}, "key": f"k{i}"}) for i in range(n_good)]
    if bad is not None:
        lines.append(bad)
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_a_bad_line_after_5000_good_ones_is_named_and_all_or_nothing_writes_nothing(dsn, tmp_path):
    bad = json.dumps({"task": "nap", "args": {"seconds": 0}, "key": LONG_KEY})
    path = _jsonl(tmp_path / "jobs.jsonl", 5001, bad)
    r = pgsteady("--app", APP, "enqueue", "--from-file", path, "--all-or-nothing", dsn=dsn)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert "5002" in r.stderr and "nothing" in r.stderr
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == 0


def test_a_line_that_is_not_utf8_is_reported_by_number_before_anything_is_written(dsn, tmp_path):
    path = tmp_path / "jobs.jsonl"
    good = json.dumps({"task": "nap", "args": {"seconds": 0}}).encode()
    path.write_bytes(good + b"\n" + b'{"task": "nap", "args": {"s": "\xff"}}\n' + good + b"\n")
    r = pgsteady("--app", APP, "enqueue", "--from-file", str(path), "--all-or-nothing", dsn=dsn)
    assert r.returncode == 2 and f"{path}:2: not UTF-8" in r.stderr, r.stderr
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == 0


def test_a_line_longer_than_any_job_is_refused_by_number_before_it_is_parsed(dsn, tmp_path):
    from pgsteady.security.settings import MAX_JSONL_LINE_BYTES

    path = tmp_path / "jobs.jsonl"
    good = json.dumps({"task": "nap", "args": {"seconds": 0}})
    huge = json.dumps({"task": "nap", "args": {"blob": "x" * MAX_JSONL_LINE_BYTES}})
    path.write_text(f"{good}\n{huge}\n{good}\n")
    r = pgsteady("--app", APP, "enqueue", "--from-file", str(path), "--all-or-nothing", dsn=dsn)
    assert r.returncode == 2 and f"{path}:2: the line is" in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == 0


@pytest.mark.parametrize("name", ["-", "/dev/stdin"])
def test_from_file_reads_stdin(dsn, tmp_path, name):
    path = _jsonl(tmp_path / "jobs.jsonl", 3)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PGSTEADY_DSN": dsn}
    with open(path) as stdin:
        r = subprocess.run([sys.executable, "-m", "pgsteady", "--app", APP, "enqueue", "--from-file", name, "--json"],
                           stdin=stdin, cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["new"] == 3
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.jobs") == 3


def test_an_empty_file_says_nothing_was_enqueued_and_answers_no(dsn, tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    r = pgsteady("--app", APP, "enqueue", "--from-file", str(path), dsn=dsn)
    assert r.returncode == 1 and "has no lines" in r.stderr


# -- errors from the database, and a worker that dies ---------------------------------------------


@pytest.fixture
def bare_role(server_dsn, dsn):
    """A DSN for the test database as a fresh role with no privilege on the pgsteady schema."""
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    role = f"cli_role_{os.getpid()}_{id(dsn) % 10_000}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    yield role, make_conninfo(dsn, user=role)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_a_worker_that_dies_of_an_error_says_why_in_one_line(dsn, bare_role):
    role, role_dsn = bare_role
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'GRANT USAGE ON SCHEMA pgsteady TO "{role}"')
        conn.execute(f'GRANT SELECT ON pgsteady.migrations TO "{role}"')
    r = pgsteady("--app", APP, "worker", "--until-idle", dsn=role_dsn)
    one_line_error(r, "the worker stopped", "permission denied", "--debug")
    debug = pgsteady("--app", APP, "--debug", "worker", "--until-idle", dsn=role_dsn)
    assert debug.returncode == 2 and "Traceback" in debug.stderr


def test_migrate_refused_by_the_database_is_one_line_with_the_fix(empty_dsn, server_dsn):
    from psycopg import sql
    from psycopg.conninfo import make_conninfo

    role = f"cli_mig_{os.getpid()}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        r = pgsteady("migrate", dsn=make_conninfo(empty_dsn, user=role))
        one_line_error(r, f"as {role} was refused", "Fix: GRANT CREATE ON DATABASE")
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
