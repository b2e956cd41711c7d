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
    assert not deploys.settled(recent, until=until)  # its after window is still being counted
    assert deploys.settled(later, until=marked + timedelta(minutes=62))
    assert not deploys.settled(later, until=marked + timedelta(minutes=60))
    c = client_for(seeded.dsn)
    first, second = c.get("/deploys").text, c.get("/deploys").text
    assert "v42" in first and "v42" in second
