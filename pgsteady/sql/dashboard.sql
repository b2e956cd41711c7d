-- The dashboard's own reads (pgsteady/dashboard/reads.py). Everything else
-- it shows comes from the domain modules (monitoring snapshot, queues,
-- schedules, jobs, indexes, changes). Nothing here counts the jobs table.

-- name: dashboard_jobs
-- One page of the job list, newest first, by keyset (id < %(before)s, never
-- OFFSET), looking at most at the %(scan)s jobs below %(before)s. Plan: the
-- inner query is a backward index scan of jobs_pkey that stops after
-- %(scan)s rows (so a page costs the same with ten million jobs as with
-- ten), then the filters run on those rows only. A rare filter may find no
-- match in one scan: the page then says so and links to the next scan
-- (dashboard_jobs_scanned tells where it ended), rather than walking the
-- whole history or counting it. The text filter is a plain substring of the
-- arguments' JSON (strpos: no LIKE wildcards to escape), case-insensitive.
SELECT id, queue, task, state::text AS state, attempt, max_attempts, key, run_at, created_at, started_at,
       finished_at, worker_id,
       CASE WHEN state <> 'succeeded' THEN errors -> -1 ->> 'error' END AS last_error
FROM (
    SELECT * FROM {schema}.jobs
    WHERE %(before)s::bigint IS NULL OR id < %(before)s
    ORDER BY id DESC
    LIMIT %(scan)s
) AS recent
WHERE (%(state)s::text IS NULL OR state = %(state)s::{schema}.job_state)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(key)s::text IS NULL OR key = %(key)s)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (%(text)s::text IS NULL OR strpos(lower(args::text), lower(%(text)s)) > 0)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: dashboard_jobs_scanned
-- Where the last scan of dashboard_jobs ended: an index-only scan of at most
-- %(scan)s entries of jobs_pkey, plus one row's created_at.
SELECT min(id) AS last_id, count(*)::int AS scanned,
       (SELECT created_at FROM {schema}.jobs WHERE id = min(s.id)) AS last_created_at
FROM (SELECT id FROM {schema}.jobs WHERE %(before)s::bigint IS NULL OR id < %(before)s
      ORDER BY id DESC LIMIT %(scan)s) AS s;

-- name: dashboard_active_jobs
-- Waiting or running jobs: few, and each state has its partial index
-- (jobs_claim_idx, jobs_lease_idx), so these pages filter without a scan bound.
SELECT id, queue, task, state::text AS state, attempt, max_attempts, key, run_at, created_at, started_at,
       finished_at, worker_id, errors -> -1 ->> 'error' AS last_error
FROM {schema}.jobs
WHERE state = %(state)s::{schema}.job_state
  AND (%(before)s::bigint IS NULL OR id < %(before)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(key)s::text IS NULL OR key = %(key)s)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (%(text)s::text IS NULL OR strpos(lower(args::text), lower(%(text)s)) > 0)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: dashboard_running_by_worker
-- The running jobs per worker, for the Workers page (the workers are the
-- status snapshot's). Plan: a scan of a partial index on state = 'running'
-- (jobs_lease_idx or jobs_running_queue_idx: a few hundred entries, never
-- the finished history) and a hash aggregate by worker_id.
SELECT worker_id, count(*)::int AS running
FROM {schema}.jobs
WHERE state = 'running' AND worker_id IS NOT NULL
GROUP BY worker_id;

-- name: dashboard_index_builds
-- Index builds in progress anywhere in this database (a system view, no table scan).
SELECT p.pid, c.relname AS table_name, i.relname AS index_name, p.phase, p.blocks_done, p.blocks_total,
       p.tuples_done, p.tuples_total, a.query_start
FROM pg_stat_progress_create_index p
LEFT JOIN pg_class c ON c.oid = p.relid
LEFT JOIN pg_class i ON i.oid = p.index_relid
LEFT JOIN pg_stat_activity a ON a.pid = p.pid
WHERE p.datname = current_database()
ORDER BY a.query_start NULLS LAST;

-- name: dashboard_deploys_between
SELECT id, version, marked_at FROM {schema}.deploys
WHERE marked_at >= %(since)s AND marked_at < %(until)s
ORDER BY marked_at;
