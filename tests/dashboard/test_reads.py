"""The dashboard's own reads: what they return, and the plans that keep them fast."""

from __future__ import annotations

import re

import psycopg

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
