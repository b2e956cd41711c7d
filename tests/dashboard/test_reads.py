"""The dashboard's own reads: what they return, and the plans that keep them fast."""

from __future__ import annotations

import re

import psycopg
from markupsafe import escape

from pgsteady.dashboard import reads
from pgsteady.monitoring import snapshot
from pgsteady.queries import for_schema

Q = for_schema("pgsteady")


def test_the_workers_page_shows_the_snapshots_workers_with_their_running_jobs(seeded, client_for):
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pgsteady.jobs (queue, task, args, state, attempt, max_attempts, lease_token, "
                     "lease_expires_at, worker_id, started_at) SELECT 'render', 'render.page', '{}', 'running', 1, "
                     "3, gen_random_uuid(), now() + interval '5 minutes', 'w-live', now() FROM generate_series(1, 2)")
        running = reads.running_by_worker(conn, Q)
        workers = snapshot.read(conn, Q, windows=False, rule=None).workers
    assert running["w-live"] == 3  # the seeded running job and these two
    page = client_for(seeded.dsn).get("/workers").text
    rows = re.findall(r'<tr[^>]*><th scope="row">([^<\s]+).*?</tr>', page, re.S)
    assert rows == [w.id for w in workers]
    live_row = re.search(r'<th scope="row">w-live.*?</tr>', page, re.S).group(0)
    live = next(w for w in workers if w.id == "w-live")
    assert f'<td class="num">{live.concurrency}</td><td class="num">3</td>' in live_row  # Concurrency, Running


def test_a_day_point_sums_its_minutes_histograms_included(seeded):
    from datetime import timedelta

    from pgsteady.monitoring.counts import Counts

    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        until = snapshot.read(conn, Q, windows=False, rule=None).until
        minutes = reads.series(conn, Q, until=until, span=timedelta(hours=24))
        points = reads.series(conn, Q, until=until, span=timedelta(hours=24), step=timedelta(minutes=5))
    assert len(minutes.counts) == 1440 and len(points.counts) == 288
    assert points.minutes[1] - points.minutes[0] == timedelta(minutes=5) and points.minutes[0] == minutes.minutes[0]
    for i, point in enumerate(points.counts):
        summed = sum(minutes.counts[5 * i:5 * i + 5], Counts())
        assert (point.succeeded, point.failures, point.run, point.wait) == \
            (summed.succeeded, summed.failures, summed.run, summed.wait), points.minutes[i]
    assert sum(p.succeeded for p in points.counts) > 0 and sum(p.failures for p in points.counts) > 0


def test_status_keeps_each_questions_findings_and_the_overview_shows_them(seeded, client_for):
    from pgsteady.monitoring.questions import QUESTIONS, Thresholds, ask
    from pgsteady.monitoring.status import check

    s = check(seeded.dsn)
    assert list(s.answers) == [q.name for q in QUESTIONS]
    assert sorted(t for found in s.answers.values() for t in found) == sorted(s.reasons)
    assert [f.text for f in ask(s.snapshot, Thresholds())] == s.reasons
    page = client_for(seeded.dsn).get("/").text
    for q in QUESTIONS:
        row = re.search(rf"<tr><td>{re.escape(str(escape(q.doc)))}</td><td>(.*?)</td>", page).group(1)
        assert ("fine" in row) == (not s.answers[q.name]), (q.name, row)


def test_a_deploy_comparison_is_settled_once_its_after_window_is_counted(seeded, client_for):
    from datetime import timedelta

    from pgsteady.monitoring import deploys

    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        until = snapshot.read(conn, Q, windows=False, rule=None).until
        recent = deploys.compare(conn, Q, until=until)  # v42, marked 30 minutes ago
        marked = recent["deploy"]["marked_at"]
        later = deploys.compare(conn, Q, until=marked + timedelta(minutes=62))
        kept: dict = {}
        first = deploys.compare(conn, Q, until=marked + timedelta(minutes=62), settled_cache=kept)
        assert deploys.compare(conn, Q, until=marked + timedelta(minutes=62), settled_cache=kept) is first
        assert first == later and len(kept) == 1
        unsettled: dict = {}
        deploys.compare(conn, Q, until=until, settled_cache=unsettled)
        assert unsettled == {}  # still being counted: compared again next time
    assert not deploys.settled(recent, until=until)  # its after window is still being counted
    assert deploys.settled(later, until=marked + timedelta(minutes=62))
    assert not deploys.settled(later, until=marked + timedelta(minutes=60))
    c = client_for(seeded.dsn)
    first, second = c.get("/deploys").text, c.get("/deploys").text
    assert "v42" in first and "v42" in second


def _plan(conn: psycopg.Connection, query: str, params: dict) -> str:
    # The seeded tables are small enough for a sequential scan to win; with
    # it off, the plan shows which index the query can walk.
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        return str(conn.execute("EXPLAIN (FORMAT JSON) " + query, params).fetchone()[0])


def test_failed_and_keyed_jobs_are_found_past_a_backlog_by_their_own_indexes(seeded):
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pgsteady.jobs (queue, task, args, max_attempts) "
                     "SELECT 'mail', 'mail.send', '{}', 3 FROM generate_series(1, 30)")  # newer than every failure
        failed = [r[0] for r in conn.execute("SELECT id FROM pgsteady.jobs WHERE state = 'failed' ORDER BY id DESC")]
        succeeded = [r[0] for r in conn.execute(
            "SELECT id FROM pgsteady.jobs WHERE state = 'succeeded' ORDER BY id DESC LIMIT 5")]
        page = reads.jobs(conn, Q, reads.JobFilter(state="failed"), limit=50, scan=10)
        assert [r.id for r in page.rows] == failed[:10] and page.scanned_to == failed[9]
        page = reads.jobs(conn, Q, reads.JobFilter(state="succeeded"), limit=5, scan=10)
        assert [r.id for r in page.rows] == succeeded  # the 30 waiting jobs are stepped over, not counted
        page = reads.jobs(conn, Q, reads.JobFilter(key="user:7"), limit=50, scan=10)
        assert [r.id for r in page.rows] == [seeded.secret_id] and page.scanned_to is None
        base = dict(before=None, queue=None, task=None, since=None, text=None, limit=51, scan=20000)
        assert "jobs_ended_badly_idx" in _plan(conn, Q.dashboard_ended_badly_jobs, {**base, "state": "failed",
                                                                                     "key": None})
        assert "jobs_key_history_idx" in _plan(conn, Q.dashboard_key_jobs, {**base, "state": None, "key": "user:7"})
        assert "jobs_pkey" in _plan(conn, Q.dashboard_jobs, {**base, "state": None, "key": None})
