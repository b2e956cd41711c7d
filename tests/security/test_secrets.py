"""Secrets: command lines, files others can read, and secret-looking keys in stored jobs; never printed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pgsteady import App
from pgsteady.errors import ConfigError
from pgsteady.security import check

PASSWORD = "s3cr3t-pw-never-shown"


def checked(dsn, home, **options):
    options.setdefault("scan_processes", False)
    options.setdefault("argv", ["pgsteady", "security", "check"])
    options.setdefault("environ", {})
    return check(dsn, home=home, **options)


def by_subject(report, check_name):
    return {r.subject: r for r in report.by_check(check_name)}


def test_password_in_this_command_line_fails_and_is_not_repeated(dsn, tmp_path):
    argv = ["pgsteady", "--dsn", f"postgresql://app:{PASSWORD}@db.example/prod", "security", "check"]
    report = checked(dsn, tmp_path, argv=argv)
    result = by_subject(report, "command_line")["this process"]
    assert result.status == "fail" and result.evidence["positions"] == [2]
    assert PASSWORD not in report.to_json()


def test_running_pgsteady_process_with_a_password_in_its_argv_is_found_by_pid(dsn, tmp_path):
    # The child says "ready" once it runs: before its exec, /proc shows the
    # parent's command line, and a scan in that moment would find nothing.
    proc = subprocess.Popen([sys.executable, "-c", "import sys; print('ready', flush=True); sys.stdin.read()",
                             "pgsteady", "worker", "--dsn", f"postgresql://app:{PASSWORD}@db.example/prod"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        report = checked(dsn, tmp_path, scan_processes=True)
    finally:
        proc.stdin.close()
        proc.wait(30)
    result = by_subject(report, "command_line")["running pgsteady processes"]
    assert result.status == "fail"
    assert proc.pid in [p["pid"] for p in result.evidence["processes"]]
    assert PASSWORD not in report.to_json()


def test_pgpass_readable_by_others_fails_and_0600_passes(dsn, tmp_path):
    pgpass = tmp_path / ".pgpass"
    pgpass.write_text(f"db.example:5432:prod:app:{PASSWORD}\n")
    pgpass.chmod(0o644)
    result = by_subject(checked(dsn, tmp_path), "secret_files")[str(pgpass)]
    assert result.status == "fail" and "libpq ignores it" in result.message and result.fix == f"chmod 600 {pgpass}"
    pgpass.chmod(0o600)
    assert by_subject(checked(dsn, tmp_path), "secret_files")[str(pgpass)].status == "pass"


def test_service_file_named_by_pgservicefile_with_a_password_is_checked(dsn, tmp_path):
    service = tmp_path / "services.conf"
    service.write_text(f"[prod]\nhost=db.example\nuser=app\npassword={PASSWORD}\n")
    service.chmod(0o604)
    report = checked(dsn, tmp_path, environ={"PGSERVICEFILE": str(service)})
    result = by_subject(report, "secret_files")[str(service)]
    assert result.status == "fail" and result.evidence["secret_lines"] == 1


@pytest.mark.parametrize("mode, expected", [(0o644, "fail"), (0o640, "warn"), (0o600, "pass"), (0o666, "fail")])
def test_env_file_with_secrets_is_judged_by_who_can_read_or_write_it(dsn, tmp_path, mode, expected):
    env = tmp_path / "app.env"
    env.write_text(f"DEBUG=1\nexport API_TOKEN='{PASSWORD}'\nDATABASE_URL=postgresql://app:{PASSWORD}@db/prod\n")
    env.chmod(mode)
    report = checked(dsn, tmp_path, env_files=[str(env)])
    result = by_subject(report, "secret_files")[str(env)]
    assert result.status == expected
    assert result.evidence["secret_lines"] == 2
    assert PASSWORD not in report.to_json()


def test_env_file_without_secrets_passes_even_when_readable(dsn, tmp_path):
    env = tmp_path / "app.env"
    env.write_text("DEBUG=1\nLOG_LEVEL=info\nEMPTY_TOKEN=\n")
    env.chmod(0o644)
    assert by_subject(checked(dsn, tmp_path, env_files=[str(env)]), "secret_files")[str(env)].status == "pass"


def test_missing_env_file_is_bad_input(dsn, tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        checked(dsn, tmp_path, env_files=[str(tmp_path / "nope.env")])


def test_secret_key_pattern_from_the_environment_is_the_one_sampled(dsn, tmp_path):
    app = App(dsn=dsn)

    @app.task(name="kyc")
    def kyc(ssn: str) -> None:
        pass

    try:
        app.enqueue("kyc", {"ssn": PASSWORD})
    finally:
        app.close()
    assert by_subject(checked(dsn, tmp_path), "stored_secrets")["job arguments"].status == "pass"
    report = checked(dsn, tmp_path, environ={"PGSTEADY_SECRET_KEYS": "^ssn$"})
    result = by_subject(report, "stored_secrets")["job arguments"]
    assert result.status == "warn" and result.evidence["by_task"] == {"kyc": 1}
    assert PASSWORD not in report.to_json()


def test_sample_bounds_how_many_jobs_are_read(dsn, tmp_path):
    app = App(dsn=dsn)

    @app.task(name="login")
    def login(password: str) -> None:
        pass

    try:
        app.enqueue_many([("login", {"password": str(i)}) for i in range(5)])
    finally:
        app.close()
    result = by_subject(checked(dsn, tmp_path, sample=3), "stored_secrets")["job arguments"]
    assert result.evidence["sampled"] == 3 and result.evidence["with_secret_keys"] == 3
