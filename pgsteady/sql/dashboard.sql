-- The dashboard's own reads (pgsteady/dashboard/reads.py). Everything else
-- it shows comes from the domain modules (monitoring snapshot, queues,
-- schedules, jobs, indexes, changes). Nothing here counts the jobs table.

-- The job list has one query per shape of filter (reads.jobs picks it),
-- each walking an index in the list's order (id descending, keyset on
-- id < %(before)s: never OFFSET, never a count), so that a page costs the
-- same with ten million jobs as with ten. Figures: bench/dashboard.py and
-- docs/benchmarks.md ("Dashboard at scale").

-- name: dashboard_jobs
-- No state, or succeeded (most of the history): the inner query is a
-- backward index scan of jobs_pkey from %(before)s that stops after %(scan)s
-- jobs of that state (a backlog of waiting jobs, the newest ids, is stepped
-- over, not counted), then the other filters run on those rows only. A rare
-- filter may find no match in one scan: the page then says so and links to
-- the next scan (dashboard_jobs_scanned tells where it ended), rather than
-- walking the whole history. The text filter is a plain substring of the
-- arguments' JSON (strpos: no LIKE wildcards to escape), case-insensitive.
SELECT id, queue, task, state::text AS state, attempt, max_attempts, key, run_at, created_at, started_at,
       finished_at, worker_id,
       CASE WHEN state <> 'succeeded' THEN errors -> -1 ->> 'error' END AS last_error
FROM (
    SELECT * FROM {schema}.jobs
    WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
      AND (%(state)s::text IS NULL OR state = %(state)s::{schema}.job_state)
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
-- Where the last scan of dashboard_jobs ended: the same walk of jobs_pkey
-- (at most %(scan)s jobs of the state), plus one row's created_at.
SELECT min(id) AS last_id, count(*)::int AS scanned,
       (SELECT created_at FROM {schema}.jobs WHERE id = min(s.id)) AS last_created_at
FROM (SELECT id FROM {schema}.jobs
      WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
        AND (%(state)s::text IS NULL OR state = %(state)s::{schema}.job_state)
      ORDER BY id DESC LIMIT %(scan)s) AS s;

-- name: dashboard_ended_badly_jobs
-- Failed or cancelled jobs (%(state)s is one of them): a backward range scan
-- of the partial index jobs_ended_badly_idx (state, id), a few percent of
-- the history, at most %(scan)s entries, then the other filters. Without it
-- a page of failed jobs would walk jobs_pkey past every succeeded job
-- (thirty for each failure at a 3% failure rate), or the planner would
-- sort every failed job by id. The planner must see the state's value to
-- prove the index's predicate (state = 'failed' implies state IN (...)),
-- so reads.jobs runs this query unprepared: always a custom plan. (Writing
-- the IN list here as well would let a generic plan use the index, but the
-- planner then multiplies the two selectivities, expects a few thousand
-- rows and sorts 300,000 instead: 2.4 s at ten million jobs.)
SELECT id, queue, task, state::text AS state, attempt, max_attempts, key, run_at, created_at, started_at,
       finished_at, worker_id,
       CASE WHEN state <> 'succeeded' THEN errors -> -1 ->> 'error' END AS last_error
FROM (
    SELECT * FROM {schema}.jobs
    WHERE state = %(state)s::{schema}.job_state AND (%(before)s::bigint IS NULL OR id < %(before)s)
    ORDER BY state, id DESC
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

-- name: dashboard_ended_badly_jobs_scanned
-- Where the last scan of dashboard_ended_badly_jobs ended (an index-only
-- walk of the same entries of jobs_ended_badly_idx; unprepared too).
SELECT min(id) AS last_id, count(*)::int AS scanned,
       (SELECT created_at FROM {schema}.jobs WHERE id = min(s.id)) AS last_created_at
FROM (SELECT id FROM {schema}.jobs
      WHERE state = %(state)s::{schema}.job_state AND (%(before)s::bigint IS NULL OR id < %(before)s)
      ORDER BY state, id DESC LIMIT %(scan)s) AS s;

-- name: dashboard_key_jobs
-- A key is given: the jobs with that key (a handful) through the partial
-- index jobs_key_history_idx (key, id), newest first; no scan bound is
-- needed, whatever the other filters. Jobs without a key are not in it.
SELECT id, queue, task, state::text AS state, attempt, max_attempts, key, run_at, created_at, started_at,
       finished_at, worker_id,
       CASE WHEN state <> 'succeeded' THEN errors -> -1 ->> 'error' END AS last_error
FROM {schema}.jobs
WHERE key IS NOT NULL AND key = %(key)s AND (%(before)s::bigint IS NULL OR id < %(before)s)
  AND (%(state)s::text IS NULL OR state = %(state)s::{schema}.job_state)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(key)s::text IS NULL OR key = %(key)s)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
  AND (%(text)s::text IS NULL OR strpos(lower(args::text), lower(%(text)s)) > 0)
ORDER BY key, id DESC
LIMIT %(limit)s;

-- name: dashboard_active_jobs
-- Waiting or running jobs: few, and each state has its partial index
-- (jobs_claim_idx, jobs_lease_idx), so these pages filter without a scan
-- bound: a bitmap scan of the state's index, sorted by id.
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
