"""A migration of several statements runs as steps of one change, each statement recorded."""

from __future__ import annotations

import json

import psycopg

from ..helpers import scalar, wait_until
from .conftest import pgsteady, write_change

SAFE_ROUTE = """\
ALTER TABLE posts ADD COLUMN summary text;
ALTER TABLE posts ALTER COLUMN summary SET DEFAULT '';
ALTER TABLE posts ADD CONSTRAINT posts_title_not_null CHECK (title IS NOT NULL) NOT VALID;
ALTER TABLE posts VALIDATE CONSTRAINT posts_title_not_null;
ALTER TABLE posts ALTER COLUMN title SET NOT NULL;
ALTER TABLE posts DROP CONSTRAINT posts_title_not_null;
CREATE UNIQUE INDEX CONCURRENTLY posts_slug_key ON posts (slug);
ALTER TABLE posts ADD CONSTRAINT posts_slug_key UNIQUE USING INDEX posts_slug_key"""

ROLLBACK = """\
ALTER TABLE posts DROP CONSTRAINT posts_slug_key;
ALTER TABLE posts ALTER COLUMN title DROP NOT NULL;
-- pgsteady: allow drop-column (added by this change, read by no code yet)
ALTER TABLE posts DROP COLUMN summary"""


def make_posts(dsn: str, rows: int = 5_000) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE posts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, title text, slug text)")
        conn.execute("INSERT INTO posts (title, slug) SELECT 'post ' || g, 'post-' || g FROM generate_series(1, %(n)s) g",
                     {"n": rows})
        conn.execute("VACUUM ANALYZE posts")


def show(dsn: str, change_id: str) -> dict:
    return json.loads(pgsteady("change", "show", change_id, "--json", dsn=dsn).stdout)


def test_a_migration_runs_statement_by_statement_with_each_one_recorded(dsn, tmp_path, worker):
    make_posts(dsn)
    path = write_change(tmp_path, "posts-summary", SAFE_ROUTE, extra=f'rollback = """{ROLLBACK}"""\n')
    lint = pgsteady("change", "lint", str(path), dsn=dsn)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    plan = pgsteady("change", "plan", str(path), dsn=dsn)
    assert plan.returncode == 0 and "table public.posts: 5,000 rows" in plan.stdout, plan.stdout + plan.stderr

    rehearse = pgsteady("change", "rehearse", str(path), dsn=dsn)
    assert rehearse.returncode == 0, rehearse.stdout + rehearse.stderr
    assert "4. line 4: " in rehearse.stdout and "ShareUpdateExclusiveLock" in rehearse.stdout
    assert "rewrote" not in rehearse.stdout.replace("no rewrite", "")  # the safe route rewrites nothing

    worker()
    apply = pgsteady("change", "apply", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert apply.returncode == 0, apply.stdout + apply.stderr
    assert "ran 8 statement(s)" in apply.stdout and "all 8 applied" in apply.stdout
    assert scalar(dsn, "SELECT attnotnull FROM pg_attribute WHERE attrelid = 'posts'::regclass AND attname = 'title'")
    assert scalar(dsn, "SELECT count(*) FROM pg_constraint WHERE conname = 'posts_slug_key' AND contype = 'u'") == 1

    shown = show(dsn, "posts-summary")
    assert shown["status"] == "applied"
    applied = [s for s in shown["steps"] if s["step"] == "apply"][-1]
    recorded = applied["details"]["statements"]
    assert [(s["index"], s["status"]) for s in recorded] == [(i, "done") for i in range(1, 9)]
    assert recorded[6]["sql"].startswith("CREATE UNIQUE INDEX CONCURRENTLY") and recorded[6]["of"] == 8

    note = path.with_suffix(".md").read_text()
    assert "## Statements" in note and "| 4 | 4 | `ALTER TABLE posts VALIDATE CONSTRAINT posts_title_not_null`" in note
    assert "ShareUpdateExclusiveLock" in note and "done in" in note

    verify = pgsteady("change", "verify", str(path), "--watch", "0s", dsn=dsn)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    back = pgsteady("change", "rollback", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert back.returncode == 0, back.stdout + back.stderr
    assert scalar(dsn, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'posts'") == 3
    assert show(dsn, "posts-summary")["status"] == "rolled back"


def test_lint_of_a_migration_change_file_names_the_line_of_each_finding(dsn, tmp_path):
    make_posts(dsn, 10)
    path = write_change(tmp_path, "unsafe", "ALTER TABLE posts ADD COLUMN summary text;\n"
                        "ALTER TABLE posts ALTER COLUMN title SET NOT NULL")
    r = pgsteady("change", "lint", "--offline", str(path), dsn=dsn)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refuse  set-not-null" in r.stdout and "line 2: posts.title" in r.stdout, r.stdout
    # With a database lint sees the table is tiny: the scan is brief, a note.
    r = pgsteady("change", "lint", str(path), dsn=dsn)
    assert r.returncode == 0 and "note    set-not-null" in r.stdout and "bytes: brief" in r.stdout, r.stdout


def test_a_failed_statement_stops_the_apply_and_the_rerun_goes_on_from_it(dsn, tmp_path, worker):
    make_posts(dsn, 100)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE posts SET title = NULL WHERE id = 7")
    path = write_change(tmp_path, "nulls", "ALTER TABLE posts ADD COLUMN summary text;\n"
                        "ALTER TABLE posts ADD CONSTRAINT posts_title_not_null CHECK (title IS NOT NULL) NOT VALID;\n"
                        "ALTER TABLE posts VALIDATE CONSTRAINT posts_title_not_null",
                        extra="[rehearse]\nskip = true\n")
    worker()
    failed = pgsteady("change", "apply", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert failed.returncode == 2, failed.stdout + failed.stderr
    assert "statement 3 (line 3) failed" in failed.stderr and "violated by some row" in failed.stderr, failed.stderr
    assert "Traceback" not in failed.stderr
    shown = show(dsn, "nulls")
    assert shown["status"] == "apply failed"
    recorded = shown["steps"][-1]["details"]["statements"]
    assert [(s["index"], s["status"]) for s in recorded] == [(1, "done"), (2, "done"), (3, "failed")]
    text = pgsteady("change", "show", "nulls", dsn=dsn).stdout
    assert "statement 2/3 (line 2): done in" in text and "statement 3/3 (line 3): failed" in text, text

    with psycopg.connect(dsn, autocommit=True) as conn:  # the backfill the failure asked for
        conn.execute("UPDATE posts SET title = 'untitled' WHERE title IS NULL")
    again = pgsteady("change", "apply", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert again.returncode == 0, again.stdout + again.stderr  # ADD COLUMN again would fail: it is skipped
    last = show(dsn, "nulls")["steps"][-1]
    assert last["step"] == "apply" and [s["index"] for s in last["details"]["statements"]] == [3]
    assert scalar(dsn, "SELECT convalidated FROM pg_constraint WHERE conname = 'posts_title_not_null'")


def test_each_statement_waits_under_lock_timeout_and_is_retried(dsn, tmp_path, worker):
    make_posts(dsn, 100)
    path = write_change(tmp_path, "blocked", "ALTER TABLE posts ADD COLUMN a text;\nALTER TABLE posts ADD COLUMN b text",
                        extra='[rehearse]\nskip = true\n[build]\nlock_timeout = "200ms"\nlock_retries = 20\n'
                              'retry_backoff = "100ms"\n')
    holder = psycopg.connect(dsn)
    holder.execute("SELECT count(*) FROM posts")  # an open transaction: ACCESS SHARE held
    try:
        worker()
        r = pgsteady("change", "apply", str(path), dsn=dsn)
        assert r.returncode == 0, r.stderr
        job_id = show(dsn, "blocked")["steps"][-1]["job_id"]
        wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pgsteady.events WHERE job_id = %s "
                                       "AND message LIKE 'lock timeout on statement 1%%'", [job_id]) >= 1,
                   what="a lock timeout on the first statement")
    finally:
        holder.rollback()
        holder.close()
    wait_until(lambda: show(dsn, "blocked")["status"] == "applied", what="the apply to finish")
    first = show(dsn, "blocked")["steps"][-1]["details"]["statements"][0]
    assert first["status"] == "done" and first["lock_timeouts"] >= 1 and first["attempts"] == first["lock_timeouts"] + 1


def test_a_forged_migration_job_runs_no_ddl(dsn, tmp_path, worker):
    make_posts(dsn, 10)
    from pgsteady import App
    from pgsteady.changes import register

    app = App(dsn=dsn)
    register(app)
    ref = app.enqueue("pgsteady.run_migration", {"statement": "DROP TABLE posts; DROP TABLE posts_archive"})
    app.close()
    worker()
    wait_until(lambda: scalar(dsn, "SELECT state::text FROM pgsteady.jobs WHERE id = %s", [ref.id]) == "failed",
               what="the forged job to be refused")
    assert "is not a step of a recorded change" in scalar(
        dsn, "SELECT errors -> -1 ->> 'error' FROM pgsteady.jobs WHERE id = %s", [ref.id])
    assert scalar(dsn, "SELECT to_regclass('posts') IS NOT NULL")


def test_a_worker_killed_mid_migration_resumes_at_the_statement_it_was_on(dsn, tmp_path, worker):
    import signal

    from ..helpers import stop

    make_posts(dsn, 100)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE authors (id bigint PRIMARY KEY)")
    path = write_change(tmp_path, "killed", "ALTER TABLE posts ADD COLUMN a text;\n"
                        "ALTER TABLE authors ADD COLUMN b text",
                        extra='[rehearse]\nskip = true\n[build]\nlock_timeout = "60s"\n')
    holder = psycopg.connect(dsn)
    holder.execute("SELECT count(*) FROM authors")  # statement 2 waits for this transaction
    first = worker()
    r = pgsteady("change", "apply", str(path), "--json", dsn=dsn)
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    waiting = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s AND wait_event_type = 'Lock'")
    wait_until(lambda: scalar(dsn, waiting, [f"pgsteady migration job {job_id}"]) == 1, what="statement 2 waiting")
    stop(first, signal.SIGKILL)
    wait_until(lambda: scalar(dsn, waiting, [f"pgsteady migration job {job_id}"]) == 0, timeout=15,
               what="the orphaned statement ended")
    holder.rollback()
    holder.close()

    worker()
    wait_until(lambda: scalar(dsn, "SELECT state::text FROM pgsteady.jobs WHERE id = %s", [job_id]) == "succeeded",
               timeout=60, what="the next attempt")
    assert scalar(dsn, "SELECT attempt FROM pgsteady.jobs WHERE id = %s", [job_id]) == 2
    shown = show(dsn, "killed")
    assert shown["status"] == "applied"
    recorded = shown["steps"][-1]["details"]["statements"]
    # Statement 1 committed with its record in attempt 1 and was not run again (ADD COLUMN would fail).
    assert [(s["index"], s["status"], s["attempts"]) for s in recorded] == [(1, "done", 1), (2, "done", 1)]
    assert scalar(dsn, "SELECT count(*) FROM information_schema.columns WHERE column_name IN ('a', 'b')") == 2
