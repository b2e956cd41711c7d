"""The record and the note: what they say, and what they never do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

from ..helpers import ROOT, scalar, wait_until
from .conftest import make_events, pgsteady, write_change


def _git(repo, *args):
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                   env={**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com",
                        "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.com"})


def test_files_touched_keeps_whole_names_of_modified_files_and_leaves_out_untracked_ones(tmp_path):
    from pgsteady.changes import files

    repo = tmp_path / "repo"
    (repo / "changes").mkdir(parents=True)
    _git(repo, "init", "-q")
    (repo / "wd.err").write_text("one\n")
    (repo / "app.py").write_text("x = 1\n")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-qm", "first")
    path = repo / "changes" / "c.toml"
    path.write_text(files.template(path, "c"))
    _git(repo, "add", "changes/c.toml")
    _git(repo, "commit", "-qm", "the change")
    (repo / "wd.err").write_text("two\n")  # modified, unstaged: porcelain " M wd.err"
    (repo / "app.py").write_text("x = 2\n")
    _git(repo, "add", "app.py")  # modified, staged: "M  app.py"
    (repo / "scratch.txt").write_text("not part of it\n")
    (repo / "changes" / "notes.tmp").write_text("nor this\n")
    change = files.load(path)
    change.files = None
    touched = files.files_touched(change)
    assert touched == ["app.py", "changes/c.toml", "wd.err"], touched


# -- leftovers and bad input (issue 12) ------------------------------------------------


def _rehearsal_schemas(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgsteady\\_rehearsal\\_%'").fetchall()]


def test_killed_rehearsal_leaves_copies_that_cleanup_and_the_next_rehearsal_remove(dsn, tmp_path):
    make_events(dsn, 600_000)
    path = write_change(tmp_path, "killed-rehearsal", "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PGSTEADY_DSN": dsn}
    proc = subprocess.Popen([sys.executable, "-m", "pgsteady", "change", "rehearse", str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        wait_until(lambda: _rehearsal_schemas(dsn), timeout=60, what="the rehearsal's scratch schema")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    pid = scalar(dsn, "SELECT (details -> 'backend' ->> 'pid')::int FROM pgsteady.change_steps "
                      "WHERE step = 'rehearse' AND status = 'running'")
    assert pid is not None
    # The server ends the orphaned backend once it notices its client is gone.
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid]) == 0,
               timeout=60, what="the killed command's backend to end")
    assert _rehearsal_schemas(dsn)  # the copy is still there

    swept = pgsteady("change", "cleanup", "--json", dsn=dsn)
    assert swept.returncode == 0, swept.stderr
    out = json.loads(swept.stdout)
    assert len(out["schemas"]) == 1 and len(out["steps"]) == 1, out
    assert _rehearsal_schemas(dsn) == []
    step = scalar(dsn, "SELECT status || ': ' || summary FROM pgsteady.change_steps WHERE step = 'rehearse'")
    assert step.startswith("failed: the process running this rehearse ended"), step
    assert scalar(dsn, "SELECT status FROM pgsteady.changes WHERE id = 'killed-rehearsal'") == "rehearse failed"
    # A live rehearsal is never swept: run one to the end, and sweep once more.
    again = pgsteady("change", "rehearse", str(path), dsn=dsn)
    assert again.returncode == 0, again.stderr
    assert json.loads(pgsteady("change", "cleanup", "--json", dsn=dsn).stdout) == {"schemas": [], "steps": [],
                                                                                  "refused": []}


def test_the_next_rehearsal_drops_a_dead_sessions_copy_first(dsn, tmp_path):
    make_events(dsn, 1000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA pgsteady_rehearsal_deadbeef")
        conn.execute("CREATE TABLE pgsteady_rehearsal_deadbeef.events AS SELECT * FROM events")
        conn.execute("""COMMENT ON SCHEMA pgsteady_rehearsal_deadbeef IS
                        '{"pgsteady_rehearsal": {"pid": 1, "backend_start": "2020-01-01T00:00:00+00:00"}}'""")
    path = write_change(tmp_path, "next", "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)")
    r = pgsteady("change", "rehearse", str(path), dsn=dsn)
    assert r.returncode == 0, r.stderr
    assert _rehearsal_schemas(dsn) == []


def test_a_rehearsal_that_fails_on_the_copy_is_one_line_exit_2_and_a_failed_step(dsn, tmp_path):
    make_events(dsn, 1000)
    path = write_change(tmp_path, "dupes", "CREATE UNIQUE INDEX CONCURRENTLY events_kind_key ON events (kind)")
    r = pgsteady("change", "rehearse", str(path), dsn=dsn)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgsteady: error: rehearse of change dupes failed"), r.stderr
    assert "could not create unique index" in lines[0]
    assert scalar(dsn, "SELECT status FROM pgsteady.changes WHERE id = 'dupes'") == "rehearse failed"
    assert scalar(dsn, "SELECT status FROM pgsteady.change_steps WHERE step = 'rehearse'") == "failed"
    assert _rehearsal_schemas(dsn) == []


def test_a_change_file_named_md_is_refused_and_not_overwritten_by_its_note(dsn, tmp_path):
    make_events(dsn, 100)
    toml = write_change(tmp_path, "c", "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)")
    path = toml.rename(tmp_path / "c.md")
    before = path.read_bytes()
    for command in ("lint", "plan"):
        r = pgsteady("change", command, str(path), dsn=dsn)
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and ".md" in r.stderr, r.stderr
    assert path.read_bytes() == before


def test_rich_markup_and_terminal_escapes_in_a_title_are_shown_as_text(dsn, tmp_path):
    make_events(dsn, 100)
    path = write_change(tmp_path, "markup", "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)")
    path.write_text(path.read_text().replace('title = "Test change markup"',
                                             'title = "[/x] [bold]loud\\u001b[2J"'))
    assert pgsteady("change", "lint", str(path), dsn=dsn).returncode == 0
    listed = pgsteady("change", "list", dsn=dsn)
    assert listed.returncode == 0, listed.stderr
    assert "[/x] [bold]loud\\x1b[2J" in listed.stdout and "\x1b" not in listed.stdout
    shown = pgsteady("change", "show", "markup", dsn=dsn)
    assert shown.returncode == 0 and "\x1b" not in shown.stdout, shown.stderr


def test_a_leftover_copy_this_role_may_not_drop_is_reported_and_does_not_stop_the_rehearsal(dsn, tmp_path):
    make_events(dsn, 500)
    role = f"chg_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT ALL ON SCHEMA public, pgsteady TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA public, pgsteady TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA pgsteady TO {}").format(sql.Identifier(role)))
        conn.execute(sql.SQL("GRANT CREATE ON DATABASE {} TO {}").format(sql.Identifier(conn.info.dbname),
                                                                      sql.Identifier(role)))
        conn.execute(sql.SQL("ALTER TABLE events OWNER TO {}").format(sql.Identifier(role)))
        conn.execute("CREATE SCHEMA pgsteady_rehearsal_0ther")  # owned by the superuser, its backend long gone
        conn.execute("""COMMENT ON SCHEMA pgsteady_rehearsal_0ther IS
                        '{"pgsteady_rehearsal": {"pid": 1, "backend_start": "2020-01-01T00:00:00+00:00"}}'""")
    try:
        as_role = make_conninfo(dsn, user=role)
        path = write_change(tmp_path, "other", "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)")
        r = pgsteady("change", "rehearse", str(path), dsn=as_role)
        assert r.returncode == 0, r.stdout + r.stderr
        out = json.loads(pgsteady("change", "cleanup", "--json", dsn=as_role).stdout)
        assert out["schemas"] == [] and out["refused"][0].startswith("pgsteady_rehearsal_0ther"), out
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute("DROP SCHEMA IF EXISTS pgsteady_rehearsal_0ther")
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
