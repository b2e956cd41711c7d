-- Looking at jobs and acting on them by hand (the `jobs` commands).

-- name: list_jobs
SELECT id, queue, task, state::text AS state, attempt, max_attempts, priority, key,
       run_at, created_at, started_at, finished_at, worker_id, release,
       errors -> -1 ->> 'error' AS last_error
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

-- name: job_events
SELECT created_at, kind, attempt, worker_id, release, message, data
FROM {schema}.events WHERE job_id = %(id)s
ORDER BY created_at, id;

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
