"""The command line as a user meets it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

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
