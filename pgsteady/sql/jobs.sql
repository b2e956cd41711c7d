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
