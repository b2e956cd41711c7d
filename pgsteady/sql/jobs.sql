-- Enqueueing jobs. {schema} is the quoted schema name; parameters are named.

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
