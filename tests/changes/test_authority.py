"""Attack: index DDL from anybody who can enqueue a job.

``pgsteady.build_index`` is a task on the maintenance queue, so a JSONL line
or an ``app.enqueue`` can name it. Only a recorded, linted change step may
make it run DDL."""

from __future__ import annotations

import json

import psycopg
import pytest

from pgsteady import App
from pgsteady.changes import TASK, register

from ..helpers import scalar, wait_until
from .conftest import make_events, pgsteady, write_change


def _enqueue_forged(dsn: str, statement: str) -> int:
    app = App(dsn=dsn)
    register(app)
    try:
        return app.enqueue(TASK, {"statement": statement, "change_id": "nothing"}).id
    finally:
        app.close()


def _ended(dsn: str, job_id: int) -> str:
    return wait_until(lambda: scalar(dsn, "SELECT CASE WHEN state::text IN ('failed', 'succeeded') THEN state::text "
                                          "END FROM pgsteady.jobs WHERE id = %s", [job_id]),
                      timeout=60, what=f"job {job_id} ended")


@pytest.mark.parametrize("statement", [
    "DROP INDEX CONCURRENTLY events_kind_idx",
    "REINDEX TABLE CONCURRENTLY events",
])
def test_forged_build_job_from_an_enqueuer_runs_no_ddl_and_fails_naming_the_refusal(dsn, worker, statement):
    make_events(dsn, 1000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE INDEX events_kind_idx ON events (kind)")
    before = scalar(dsn, "SELECT 'events_kind_idx'::regclass::oid")
    job_id = _enqueue_forged(dsn, statement)
    worker()
    assert _ended(dsn, job_id) == "failed"
    error = scalar(dsn, "SELECT errors -> -1 ->> 'error' FROM pgsteady.jobs WHERE id = %s", [job_id])
    assert "refused" in error and "not a step of a recorded change" in error, error
    assert scalar(dsn, "SELECT attempt FROM pgsteady.jobs WHERE id = %s", [job_id]) == 1  # no retries
    # The index is the same relation: not dropped, not rebuilt.
    assert scalar(dsn, "SELECT to_regclass('events_kind_idx')::oid") == before
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.change_steps") == 0


def test_a_build_job_whose_statement_differs_from_the_record_is_refused(dsn, tmp_path, worker):
    make_events(dsn, 1000)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE INDEX events_kind_idx ON events (kind)")
    path = write_change(tmp_path, "acct", "CREATE INDEX CONCURRENTLY events_account_idx ON events (account)",
                        extra='[rehearse]\nskip = true\n')
    r = pgsteady("change", "apply", str(path), "--json", dsn=dsn)
    assert r.returncode == 0, r.stderr
    job_id = json.loads(r.stdout)["job_id"]
    # Someone with access to the jobs table swaps the statement of the waiting job.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.jobs SET args = jsonb_set(args, '{statement}', "
                     "'\"DROP INDEX CONCURRENTLY events_kind_idx\"') WHERE id = %s", [job_id])
    worker()
    assert _ended(dsn, job_id) == "failed"
    assert scalar(dsn, "SELECT to_regclass('events_kind_idx')") is not None
    assert scalar(dsn, "SELECT to_regclass('events_account_idx')") is None
    # The job recorded its own failure: no later command had to notice.
    assert scalar(dsn, "SELECT status FROM pgsteady.changes WHERE id = 'acct'") == "apply failed"
    summary = scalar(dsn, "SELECT summary FROM pgsteady.change_steps WHERE job_id = %s", [job_id])
    assert "not the apply statement recorded" in summary, summary
