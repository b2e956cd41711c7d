-- The jobs table outside a running attempt (attempts.sql owns that):
-- enqueue, reading jobs, acting on them by hand, pruning. Each statement
-- lives in the file of the table it writes (or reads, when it writes
-- none); an event it records in the same statement goes with it.
-- {schema} is the quoted schema name; parameters are named.

-- Enqueue (pgsteady/app.py, _writes_async.py).

-- name: insert_job
-- One job. With a key that is already active this inserts nothing and
-- returns no row; the caller then looks the holder up (find_by_key).
INSERT INTO {schema}.jobs (queue, task, args, key, key_active, priority, run_at, max_attempts)
VALUES (%(queue)s, %(task)s, %(args)s::jsonb, %(key)s::text, %(key)s::text IS NOT NULL, %(priority)s,
        coalesce(%(run_at)s::timestamptz, now()), %(max_attempts)s)
ON CONFLICT (key) WHERE key_active DO NOTHING
RETURNING id;

-- name: insert_jobs
-- Many jobs in one statement. Rows are inserted in input order, so the ids
-- returned, sorted, line up with the rows that were inserted.
INSERT INTO {schema}.jobs (queue, task, args, key, key_active, priority, run_at, max_attempts)
SELECT queue, task, args, key, key IS NOT NULL, priority, coalesce(run_at, now()), max_attempts
FROM unnest(%(queue)s::text[], %(task)s::text[], %(args)s::jsonb[], %(key)s::text[],
            %(priority)s::smallint[], %(run_at)s::timestamptz[], %(max_attempts)s::int[])
     WITH ORDINALITY AS r(queue, task, args, key, priority, run_at, max_attempts, ord)
ORDER BY ord
ON CONFLICT (key) WHERE key_active DO NOTHING
RETURNING id, key;

-- name: find_by_keys
SELECT key, id, state::text FROM {schema}.jobs WHERE key = ANY(%(keys)s::text[]) AND key_active;

-- name: release_expired_keys
-- A succeeded job holds its key only for the key retention; after that the
-- key is free for a new job. Done lazily, when a new job asks for the key.
UPDATE {schema}.jobs SET key_active = false
WHERE key = ANY(%(keys)s::text[]) AND key_active AND state = 'succeeded'
  AND finished_at < now() - %(retention)s::interval
RETURNING key;

-- name: reserve_job_ids
-- Ids for a COPY of many jobs without keys (see copy_jobs), ascending in the
-- order the jobs were given, and now(), which stands in for run_at's default
-- in copy_jobs_at (run in the COPY's transaction).
SELECT ARRAY(SELECT nextval('{schema}.jobs_id_seq') FROM generate_series(1, %(n)s) ORDER BY 1), now();

-- name: copy_jobs
-- COPY is the cheapest way into a table: no executor work per row beyond
-- the indexes. Only for jobs without keys, which cannot conflict. COPY
-- writes the given ids into the identity column and fires the notify trigger
-- like an INSERT. run_at and created_at take their default, the COPY's now().
COPY {schema}.jobs (id, queue, task, args, priority, max_attempts) FROM STDIN

-- name: copy_jobs_at
-- copy_jobs for a batch where some job has its own run_at: the others get
-- reserve_job_ids' now(), the transaction's.
COPY {schema}.jobs (id, queue, task, args, priority, run_at, max_attempts) FROM STDIN

-- Reading jobs: `jobs list/show` (pgsteady/jobs.py), the change workflow's
-- wait for its job and watch after a release, the dashboard's job pages.

-- name: list_jobs
SELECT id, queue, task, state::text AS state, attempt, max_attempts, priority, key,
       run_at, created_at, started_at, finished_at, worker_id, release,
       CASE WHEN state <> 'succeeded' THEN errors -> -1 ->> 'error' END AS last_error
FROM {schema}.jobs
WHERE (%(state)s::text IS NULL OR state::text = %(state)s)
  AND (%(queue)s::text IS NULL OR queue = %(queue)s)
  AND (%(task)s::text IS NULL OR task = %(task)s)
  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
ORDER BY id DESC
LIMIT %(limit)s;

-- name: get_job
SELECT id, queue, task, args, key, key_active, state::text AS state, priority, run_at, attempt,
       max_attempts, lease_expires_at, worker_id, release, cancel_requested, checkpoint,
       errors, created_at, started_at, finished_at
FROM {schema}.jobs WHERE id = %(id)s;

-- name: job_outcome
SELECT state::text AS state, attempt, max_attempts, errors -> -1 ->> 'error' AS last_error, finished_at
FROM {schema}.jobs WHERE id = %(id)s;

-- name: job_failure_window
-- Finished jobs in a time window, for the watch after a release.
SELECT count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) AS finished
FROM {schema}.jobs
WHERE finished_at >= %(since)s AND finished_at < %(until)s;

-- The job list has one query per shape of filter (reads.jobs picks it),
-- each walking an index in the list's order (id descending, keyset on
-- id < %(before)s: never OFFSET, never a count), so that a page costs the
-- same with ten million jobs as with ten. Figures: bench/dashboard.py and
-- docs/benchmarks.md ("Dashboard at scale").

-- name: _dashboard_job_row
-- The columns of a row of the dashboard's job list (every query below).
id, queue, task, state::text AS state, attempt, max_attempts, key, run_at, created_at, started_at,
finished_at, worker_id, CASE WHEN state <> 'succeeded' THEN errors -> -1 ->> 'error' END AS last_error

-- name: _dashboard_job_filters
-- The list's filters besides the state, applied after each query's index
-- walk (every query below).
(%(queue)s::text IS NULL OR queue = %(queue)s)
AND (%(task)s::text IS NULL OR task = %(task)s)
AND (%(key)s::text IS NULL OR key = %(key)s)
AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
AND (%(text)s::text IS NULL OR strpos(lower(args::text), lower(%(text)s)) > 0)

-- name: dashboard_jobs
-- No state, or succeeded (most of the history): the inner query is a
-- backward index scan of jobs_pkey from %(before)s that stops after %(scan)s
-- jobs of that state (a backlog of waiting jobs, the newest ids, is stepped
-- over, not counted), then the other filters run on those rows only. A rare
-- filter may find no match in one scan: the page then says so and links to
-- the next scan (dashboard_jobs_scanned tells where it ended), rather than
-- walking the whole history. The text filter is a plain substring of the
-- arguments' JSON (strpos: no LIKE wildcards to escape), case-insensitive.
SELECT {_dashboard_job_row}
FROM (
    SELECT * FROM {schema}.jobs
    WHERE (%(before)s::bigint IS NULL OR id < %(before)s)
      AND (%(state)s::text IS NULL OR state = %(state)s::{schema}.job_state)
    ORDER BY id DESC
    LIMIT %(scan)s
) AS recent
WHERE (%(state)s::text IS NULL OR state = %(state)s::{schema}.job_state)
  AND {_dashboard_job_filters}
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
SELECT {_dashboard_job_row}
FROM (
    SELECT * FROM {schema}.jobs
    WHERE state = %(state)s::{schema}.job_state AND (%(before)s::bigint IS NULL OR id < %(before)s)
    ORDER BY state, id DESC
    LIMIT %(scan)s
) AS recent
WHERE (%(state)s::text IS NULL OR state = %(state)s::{schema}.job_state)
  AND {_dashboard_job_filters}
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
SELECT {_dashboard_job_row}
FROM {schema}.jobs
WHERE key IS NOT NULL AND key = %(key)s AND (%(before)s::bigint IS NULL OR id < %(before)s)
  AND (%(state)s::text IS NULL OR state = %(state)s::{schema}.job_state)
  AND {_dashboard_job_filters}
ORDER BY key, id DESC
LIMIT %(limit)s;

-- name: dashboard_active_jobs
-- Waiting or running jobs: few, and each state has its partial index
-- (jobs_claim_idx, jobs_lease_idx), so these pages filter without a scan
-- bound: a bitmap scan of the state's index, sorted by id.
SELECT {_dashboard_job_row}
FROM {schema}.jobs
WHERE state = %(state)s::{schema}.job_state
  AND (%(before)s::bigint IS NULL OR id < %(before)s)
  AND {_dashboard_job_filters}
ORDER BY id DESC
LIMIT %(limit)s;

-- Acting on jobs by hand (pgsteady/jobs.py: the CLI and the dashboard).

-- name: retry_job
-- A failed or cancelled job runs again now, with one more attempt allowed.
WITH r AS (
    UPDATE {schema}.jobs
    SET state = 'waiting', run_at = now(), finished_at = NULL, cancel_requested = false,
        cancel_requested_by = NULL, key_active = key IS NOT NULL, max_attempts = greatest(max_attempts, attempt + 1)
    WHERE id = %(id)s AND state IN ('failed', 'cancelled')
    RETURNING id, attempt, queue
), ev AS (
    INSERT INTO {schema}.events (job_id, attempt, worker_id, kind, message)
    SELECT id, attempt, %(actor)s, 'manual_retry', 'retried by hand' FROM r
)
SELECT id, queue FROM r;

-- name: cancel_waiting_job
WITH c AS (
    UPDATE {schema}.jobs
    SET state = 'cancelled', finished_at = now(), key_active = false
    WHERE id = %(id)s AND state = 'waiting'
    RETURNING id, attempt
), ev AS (
    INSERT INTO {schema}.events (job_id, attempt, worker_id, kind, message)
    SELECT id, attempt, %(actor)s, 'cancelled', 'cancelled by hand before it ran' FROM c
)
SELECT id FROM c;

-- name: request_cancel
-- A running job is asked to stop. This row, not the notification, is the
-- authority: its worker re-reads cancel_requested when notified (or at its
-- next heartbeat) and ends the attempt as cancelled only if the function has
-- not returned yet.
WITH c AS (
    UPDATE {schema}.jobs SET cancel_requested = true, cancel_requested_by = %(actor)s
    WHERE id = %(id)s AND state = 'running'
    RETURNING id, attempt
), ev AS (
    INSERT INTO {schema}.events (job_id, attempt, worker_id, kind, message)
    SELECT id, attempt, %(actor)s, 'cancel_requested', 'cancellation requested by hand' FROM c
)
SELECT id, pg_notify(%(channel)s, %(payload)s) FROM c;

-- name: notify
SELECT pg_notify(%(channel)s, %(payload)s);

-- Pruning (maintenance/pruner.py).

-- name: prune_jobs
-- One small batch of finished jobs older than their state's retention.
DELETE FROM {schema}.jobs WHERE id IN (
    SELECT id FROM {schema}.jobs
    WHERE state = %(state)s::{schema}.job_state AND finished_at IS NOT NULL
      AND finished_at < now() - %(retention)s::interval
    LIMIT %(batch)s
);
