"""`pgsteady security roles`: the printed SQL, applied to a real database, gives
roles that can do their work and nothing more."""

from __future__ import annotations

import psycopg
import pytest
from psycopg import sql

from pgsteady import App, run_worker
from pgsteady.cli import main
from pgsteady.monitoring import status
from pgsteady.security.roles import role_names

from ..helpers import states


def printed_sql(capsys, *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(["security", "roles", *args])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    return out


def apply(capsys, roles, dsn: str) -> dict[str, str]:
    script = printed_sql(capsys, "--prefix", roles.prefix)
    names = role_names(roles.prefix)
    roles.made += [(name, dsn) for name in names.values()]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(script)
    return {kind: psycopg.conninfo.make_conninfo(dsn, user=name) for kind, name in names.items()}


def test_worker_role_from_the_printed_sql_enqueues_claims_and_completes(capsys, roles, dsn):
    kinds = apply(capsys, roles, dsn)
    app = App(dsn=kinds["worker"])
    done = []

    @app.task(name="note")
    def note(n: int) -> None:
        done.append(n)

    try:
        app.enqueue("note", {"n": 1}, key="note:1")
        app.enqueue("note", {"n": 2})
        stats = run_worker(app, until_idle=True, handle_signals=False, concurrency=2, lease=5, poll_interval=0.1)
    finally:
        app.close()
    assert sorted(done) == [1, 2]
    assert states(dsn) == {"succeeded": 2}
    assert stats is not None
    with psycopg.connect(kinds["worker"]) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("CREATE TABLE pgsteady.planted (id int)")
        conn.rollback()
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DROP TABLE pgsteady.jobs")


def test_readonly_role_reads_status_but_cannot_write(capsys, roles, dsn):
    kinds = apply(capsys, roles, dsn)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pgsteady.jobs (queue, task, args, max_attempts) VALUES ('default', 't', '{}', 1)")
    result = status.check(kinds["readonly"])
    assert result.sections["up"]["database"]["reachable"] is True
    assert result.sections["up"]["schema"]["current"] is True
    with psycopg.connect(kinds["readonly"]) as conn:
        assert conn.execute("SELECT count(*) FROM pgsteady.jobs").fetchone()[0] == 1
        for statement in ("INSERT INTO pgsteady.jobs (queue, task, args, max_attempts) VALUES ('q', 't', '{}', 1)",
                          "UPDATE pgsteady.jobs SET state = 'cancelled'",
                          "DELETE FROM pgsteady.jobs",
                          "TRUNCATE pgsteady.events"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()
    app = App(dsn=kinds["readonly"])

    @app.task(name="t")
    def t() -> None:
        pass

    try:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.enqueue("t", {})
    finally:
        app.close()


def test_printed_sql_moves_an_existing_install_to_the_migrate_role_and_revokes_public(capsys, roles, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA pgsteady TO PUBLIC")
    kinds = apply(capsys, roles, dsn)
    migrate_role = role_names(roles.prefix)["migrate"]
    with psycopg.connect(dsn) as conn:
        not_moved = conn.execute(
            "SELECT c.relname FROM pg_class c WHERE c.relnamespace = 'pgsteady'::regnamespace "
            "AND c.relkind IN ('r', 'p', 'S') AND c.relowner <> %s::regrole", [migrate_role]).fetchall()
        public = conn.execute(
            "SELECT count(*) FROM pg_class c, aclexplode(c.relacl) a "
            "WHERE c.relnamespace = 'pgsteady'::regnamespace AND a.grantee = 0").fetchone()[0]
    assert not_moved == [] and public == 0
    # The migrate role owns what it creates next, and the others get their grants by default.
    with psycopg.connect(kinds["migrate"], autocommit=True) as conn:
        conn.execute("CREATE TABLE pgsteady.later (id int)")
    with psycopg.connect(kinds["worker"]) as conn:
        conn.execute("INSERT INTO pgsteady.later VALUES (1)")
    with psycopg.connect(kinds["readonly"]) as conn:
        assert conn.execute("SELECT count(*) FROM pgsteady.later").fetchone()[0] == 1


def test_printed_sql_can_run_again_and_repairs_a_role_given_superuser(capsys, roles, dsn):
    apply(capsys, roles, dsn)
    worker = role_names(roles.prefix)["worker"]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} SUPERUSER").format(sql.Identifier(worker)))
    apply(capsys, roles, dsn)
    with psycopg.connect(dsn) as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = %s", [worker]).fetchone()[0] is False


def test_identifiers_in_the_printed_sql_are_quoted_and_hostile_prefixes_refused(capsys):
    script = printed_sql(capsys, "--prefix", "app")
    assert 'CREATE ROLE "app_worker"' in script and 'ON SCHEMA "pgsteady"' in script
    with pytest.raises(SystemExit) as exit_info:
        main(["security", "roles", "--prefix", 'x"; DROP ROLE postgres; --'])
    _, err = capsys.readouterr()
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and "role prefix" in err and "lower-case letters" in err
