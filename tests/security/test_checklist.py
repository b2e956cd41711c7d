"""The checklist against a deliberately weak database and a hardened one, with real roles."""

from __future__ import annotations

import json

import psycopg
import pytest
from psycopg import sql

from pgsteady import App
from pgsteady.security import check
from pgsteady.security.runner import CHECKS, gather, run

SECRET = "hunter2-do-not-print"


def _db(dsn: str) -> str:
    return psycopg.conninfo.conninfo_to_dict(dsn)["dbname"]


def weaken(dsn: str) -> None:
    """PUBLIC may do anything in the schema; new passwords are stored as MD5; the server logs every
    statement but no lock wait or slow query."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("GRANT ALL ON SCHEMA pgsteady TO PUBLIC")
        conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA pgsteady TO PUBLIC")
        db = sql.Identifier(_db(dsn))
        for setting, value in (("log_lock_waits", "off"), ("log_min_duration_statement", "-1"),
                               ("log_statement", "all"), ("password_encryption", "md5")):
            conn.execute(sql.SQL("ALTER DATABASE {} SET {} = {}").format(db, sql.Identifier(setting),
                                                                         sql.Literal(value)))
        conn.execute("INSERT INTO pgsteady.events (kind, data) VALUES ('log', %s)",
                     [json.dumps({"smtp": {"password": SECRET}})])


def harden(dsn: str, role: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        for setting, value in (("log_lock_waits", "on"), ("log_min_duration_statement", "1s"),
                               ("log_statement", "ddl")):
            conn.execute(sql.SQL("ALTER ROLE {} SET {} = {}").format(sql.Identifier(role), sql.Identifier(setting),
                                                                     sql.Literal(value)))


def mail_app(dsn: str) -> App:
    app = App(dsn=dsn)

    @app.task(name="mail.send")
    def send(to: str, **options) -> None:
        pass

    return app


def checked(dsn: str, **options):
    options.setdefault("scan_processes", False)  # other people's processes are not this test's business
    options.setdefault("argv", ["pgsteady", "security", "check"])
    options.setdefault("environ", {})
    return check(dsn, **options)


def test_weak_database_fails_on_superuser_public_grants_and_logs_every_statement(dsn, roles, tmp_path):
    weaken(dsn)
    app_dsn = roles.create(dsn, "app", "SUPERUSER")
    app = mail_app(app_dsn)
    try:
        app.enqueue("mail.send", {"to": "a@example.org", "api_token": SECRET}, key="weak:1")
    finally:
        app.close()
    report = checked(app_dsn, home=tmp_path)

    [role] = report.by_check("app_role")
    assert role.status == "fail" and "superuser" in role.message and role.evidence["role"]["superuser"]
    [public] = report.by_check("public_privileges")
    assert public.status == "fail" and "CREATE" in public.message
    assert {"kind": "schema", "name": "pgsteady"} in [{k: g[k] for k in ("kind", "name")}
                                                      for g in public.evidence["grants"]]
    assert report.status_of("log_lock_waits") == "warn"
    assert report.status_of("log_min_duration_statement") == "warn"
    [statement] = report.by_check("log_statement")
    assert statement.status == "warn" and "job arguments" in statement.message
    assert report.status_of("stored_secrets", "job arguments") == "warn"
    assert report.status_of("stored_secrets", "event data") == "warn"
    [encryption] = report.by_check("password_encryption")
    assert encryption.status == "fail" and "MD5" in encryption.message
    assert report.by_check("stored_secrets")[0].evidence["with_secret_keys"] == 1
    assert report.reaches("fail")
    assert SECRET not in report.to_json()
    assert {r.check for r in report.results} <= {name for name, _ in CHECKS}


def test_hardened_database_passes_permissions_secrets_and_server_logging(dsn, roles, tmp_path):
    kinds = roles.least_privilege(dsn)
    worker_role = psycopg.conninfo.conninfo_to_dict(kinds["worker"])["user"]
    harden(dsn, worker_role)
    app = mail_app(kinds["worker"])
    try:
        app.enqueue("mail.send", {"to": "a@example.org", "template": "digest"})
    finally:
        app.close()
    report = checked(kinds["worker"], role_prefix=roles.prefix, home=tmp_path)

    assert report.role == worker_role
    assert report.status_of("app_role") == "pass"
    assert {r.subject: r.status for r in report.by_check("least_privilege_roles")} == {
        f"{roles.prefix}_migrate": "pass", f"{roles.prefix}_worker": "pass", f"{roles.prefix}_readonly": "pass"}
    assert report.status_of("public_privileges") == "pass"
    # An ordinary role cannot read pg_hba_file_rules: the check says so instead of guessing.
    [hba] = report.by_check("pg_hba")
    assert hba.status == "skip" and "permission denied" in hba.message
    for name in ("log_lock_waits", "log_min_duration_statement", "log_statement"):
        assert report.status_of(name) == "pass", name
    assert report.status_of("stored_secrets", "job arguments") == "pass"
    assert report.status_of("command_line", "this process") == "pass"
    assert report.status_of("ssl") != "fail"  # a socket passes; loopback without TLS warns
    permissions = [r for r in report.results if r.area == "permissions" and r.check != "ssl"]
    assert all(r.status in ("pass", "skip") for r in permissions), [(r.check, r.message) for r in permissions]


def test_trust_over_tcp_in_pg_hba_fails_where_a_superuser_can_read_it(dsn, roles):
    su = roles.create(dsn, "su", "SUPERUSER")
    with psycopg.connect(su) as conn:
        tcp_trust = conn.execute("SELECT line_number FROM pg_hba_file_rules WHERE type LIKE 'host%%' "
                                 "AND auth_method = 'trust'").fetchall()
    report = checked(su)
    results = report.by_check("pg_hba")
    if not tcp_trust:
        assert [r.status for r in results] == ["pass"]
        pytest.skip("this server has no TCP trust line to find (the embedded one rejects TCP)")
    assert {r.evidence["line_number"] for r in results if r.status == "fail"} == {n for (n,) in tcp_trust}
    assert all("without a password" in r.message for r in results if r.evidence.get("auth_method") == "trust")


def test_least_privilege_role_given_too_much_is_named_with_what_it_has(dsn, roles):
    kinds = roles.least_privilege(dsn)
    readonly = psycopg.conninfo.conninfo_to_dict(kinds["readonly"])["user"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("GRANT INSERT ON pgsteady.jobs TO {}").format(sql.Identifier(readonly)))
        conn.execute(sql.SQL("GRANT pg_read_server_files TO {}").format(sql.Identifier(readonly)))
    report = checked(kinds["worker"], role_prefix=roles.prefix)
    [bad] = [r for r in report.by_check("least_privilege_roles") if r.subject == readonly]
    assert bad.status == "fail"
    assert "has INSERT on jobs" in bad.message and "pg_read_server_files" in bad.message


def test_a_check_that_raises_is_reported_as_skipped_and_the_others_still_answer(dsn, tmp_path, monkeypatch):
    from pgsteady.security import runner

    def broken(snap):
        raise RuntimeError("boom")
        yield

    monkeypatch.setattr(runner, "CHECKS", [("broken", broken), *runner.CHECKS])
    results = run(gather(dsn, scan_processes=False, argv=[], environ={}, home=tmp_path))
    [skipped] = [r for r in results if r.check == "broken"]
    assert skipped.status == "skip" and "RuntimeError: boom" in skipped.message
    assert any(r.check == "app_role" for r in results)


def test_a_missing_least_privilege_role_is_named_while_the_others_are_verified(dsn, roles):
    kinds = roles.least_privilege(dsn)
    readonly = psycopg.conninfo.conninfo_to_dict(kinds["readonly"])["user"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(readonly)))
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(readonly)))
    report = checked(kinds["worker"], role_prefix=roles.prefix)
    found = {r.subject: r for r in report.by_check("least_privilege_roles")}
    assert found[readonly].status == "warn" and "does not exist" in found[readonly].message
    assert found[f"{roles.prefix}_worker"].status == "pass"


def test_a_database_without_the_schema_skips_what_needs_it_and_says_why(empty_dsn, tmp_path):
    report = checked(empty_dsn, home=tmp_path)
    for check_name in ("public_privileges", "stored_secrets"):
        assert {r.status for r in report.by_check(check_name)} == {"skip"}
        assert all("does not exist" in r.message for r in report.by_check(check_name))
