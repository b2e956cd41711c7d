-- The worker's queries: claim, complete, fail, heartbeat, rescue, hand back.
--
-- Leases and fencing. A claim gives the attempt a fresh lease_token and a
-- lease_expires_at. Every later write about that attempt names the job AND
-- the token:
--
--   claim ──► running(token T1) ──heartbeat(T1)──► … ──complete(T1)──► succeeded
--                   │ lease expires (worker lost)
--                   ▼
--               rescue ──► waiting ──claim──► running(token T2)
--                                                  ▲
--   late complete(T1) / fail(T1) / heartbeat(T1) ──┘ matches no row: rejected,
--                                                    recorded as an event
--
-- Because the token check is in the UPDATE's WHERE clause, PostgreSQL
-- re-evaluates it on the newest row version after any lock wait, so there is
-- no window in which a stale worker can overwrite a newer attempt.

-- name: complete_and_claim
-- One statement, one commit per round of the claimer: mark the attempts that
-- finished since the last round succeeded (each fenced by its token, as
-- every write is) and claim up to %(limit)s waiting jobs. Completing and
-- claiming in one statement halves the commits and round trips of a busy
-- worker; either half may be empty (no finished attempts, or LIMIT 0 to
-- complete only).
--
-- The two halves touch disjoint rows (running vs waiting), so their order
-- inside the statement does not matter. Claimed rows come first; the last
-- row has only `completed`: the ids whose completion was accepted. A
-- rejected completion (the lease moved on) is recorded as an event; the
-- success path writes none. Tokens travel as text: the worker only hands
-- them back, and a text value costs less to decode and encode than a UUID.
WITH done AS (
    UPDATE {schema}.jobs j
    SET state = 'succeeded', finished_at = now(), lease_token = NULL, lease_expires_at = NULL
    FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS c(id, token)
    WHERE j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
    RETURNING j.id
), rejected AS (
    INSERT INTO {schema}.events (job_id, worker_id, release, kind, message)
    SELECT c.id, %(worker_id)s, %(release)s, 'late_write_rejected',
           'completion rejected: this attempt no longer holds the lease'
    FROM unnest(%(ids)s::bigint[]) AS c(id)
    WHERE c.id NOT IN (SELECT id FROM done)
), picked AS (
    SELECT id FROM {schema}.jobs
    WHERE state = 'waiting' AND run_at <= now()
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      -- Paused queues wait; limited ones are claimed only by claim_limited.
      AND queue NOT IN (SELECT queue FROM {schema}.queues
                        WHERE paused OR max_running IS NOT NULL OR max_per_second IS NOT NULL)
    ORDER BY priority, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE {schema}.jobs j
    SET state = 'running', attempt = j.attempt + 1, lease_token = gen_random_uuid(),
        lease_expires_at = now() + %(lease)s::interval, worker_id = %(worker_id)s,
        release = %(release)s, started_at = now(), cancel_requested = false
    FROM picked WHERE j.id = picked.id
    RETURNING j.id, j.queue, j.task, j.args, j.key, j.attempt, j.max_attempts, j.lease_token::text, j.checkpoint
)
SELECT id, queue, task, args, key, attempt, max_attempts, lease_token, checkpoint, NULL::bigint[] AS completed
FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ARRAY(SELECT id FROM done);

-- name: complete_job_in_tx
-- Runs in the transactional task's own transaction, after its body; the
-- clock, not now(), because now() is when the task's transaction began.
UPDATE {schema}.jobs
SET state = 'succeeded', finished_at = clock_timestamp(), lease_token = NULL, lease_expires_at = NULL
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'running'
RETURNING id;

-- name: fail_job
-- One failed attempt: retried after a backoff while attempts remain (and
-- retry is allowed), else failed for good. The error and traceback are kept
-- on the job (every attempt) and in the history; a stale write is rejected.
WITH f AS (
    UPDATE {schema}.jobs
    SET state = CASE WHEN %(retry)s AND attempt < max_attempts THEN 'waiting'
                     ELSE 'failed' END::{schema}.job_state,
        run_at = CASE WHEN %(retry)s AND attempt < max_attempts
                      THEN now() + %(backoff)s::interval ELSE run_at END,
        finished_at = CASE WHEN %(retry)s AND attempt < max_attempts THEN NULL ELSE now() END,
        key_active = key_active AND %(retry)s AND attempt < max_attempts,
        lease_token = NULL, lease_expires_at = NULL,
        errors = errors || jsonb_build_array(jsonb_build_object(
            'attempt', attempt, 'at', now(), 'error', %(error)s::text,
            'traceback', %(traceback)s::text, 'worker', %(worker_id)s::text, 'release', %(release)s::text))
    WHERE id = %(id)s AND lease_token = %(token)s AND state = 'running'
    RETURNING id, attempt, state, run_at
), ev AS (
    INSERT INTO {schema}.events (job_id, attempt, worker_id, release, kind, message, data)
    SELECT id, attempt, %(worker_id)s, %(release)s,
           CASE WHEN state = 'failed' THEN 'failed' ELSE 'retry_scheduled' END, %(error)s,
           jsonb_build_object('traceback', %(traceback)s::text, 'retry_at', CASE WHEN state = 'waiting' THEN run_at END,
                              'discarded', NOT %(retry)s)
    FROM f
    UNION ALL
    SELECT %(id)s, NULL, %(worker_id)s, %(release)s, 'late_write_rejected',
           'failure report rejected: this attempt no longer holds the lease',
           jsonb_build_object('error', %(error)s::text)
    WHERE NOT EXISTS (SELECT 1 FROM f)
)
SELECT state::text FROM f;

-- name: cancel_running_job
-- The attempt stopped because someone asked it to: only a row whose
-- cancel_requested was written (by `jobs cancel`, which needs privileges on
-- the schema) is ever cancelled, whatever the worker was told.
WITH c AS (
    UPDATE {schema}.jobs
    SET state = 'cancelled', finished_at = now(), key_active = false,
        lease_token = NULL, lease_expires_at = NULL
    WHERE id = %(id)s AND lease_token = %(token)s AND state = 'running' AND cancel_requested
    RETURNING id, attempt, cancel_requested_by
)
INSERT INTO {schema}.events (job_id, attempt, worker_id, release, kind, message, data)
SELECT id, attempt, %(worker_id)s, %(release)s, 'cancelled', 'running attempt stopped on request',
       jsonb_build_object('requested_by', cancel_requested_by) FROM c
RETURNING job_id;

-- name: cancel_requests
-- Which of these attempts were asked to stop, by the row (see request_cancel).
SELECT j.id FROM {schema}.jobs j
JOIN unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS c(id, token) ON j.id = c.id AND j.lease_token = c.token
WHERE j.state = 'running' AND j.cancel_requested;

-- name: heartbeat
-- Renews the leases this worker holds and says which jobs were asked to
-- cancel. A job missing from the result has lost its lease.
WITH w AS (
    UPDATE {schema}.workers SET heartbeat_at = now() WHERE id = %(worker_id)s
)
UPDATE {schema}.jobs j
SET lease_expires_at = now() + %(lease)s::interval
FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS c(id, token)
WHERE j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
RETURNING j.id, j.cancel_requested;

-- name: record_lost_leases
INSERT INTO {schema}.events (job_id, worker_id, release, kind, message)
SELECT id, %(worker_id)s, %(release)s, 'late_write_rejected',
       'heartbeat rejected: this attempt no longer holds the lease'
FROM unnest(%(ids)s::bigint[]) AS c(id);

-- name: rescue_expired
-- Attempts whose lease ran out (worker killed, host lost, network gone) go
-- back to waiting, or to failed when they used their last attempt. Any live
-- worker may run this; SKIP LOCKED keeps two rescuers off the same rows.
WITH expired AS (
    SELECT id FROM {schema}.jobs
    WHERE state = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), r AS (
    UPDATE {schema}.jobs j
    SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'waiting' END::{schema}.job_state,
        run_at = now(),
        finished_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,
        key_active = j.key_active AND j.attempt < j.max_attempts,
        lease_token = NULL, lease_expires_at = NULL,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(), 'worker', j.worker_id,
            'error', 'lease expired: worker ' || coalesce(j.worker_id, '?') || ' stopped renewing it'))
    FROM expired WHERE j.id = expired.id
    RETURNING j.id, j.attempt, j.state, j.worker_id
)
INSERT INTO {schema}.events (job_id, attempt, worker_id, release, kind, message, data)
SELECT id, attempt, %(worker_id)s, %(release)s, 'rescued',
       'lease of worker ' || coalesce(r.worker_id, '?') || ' expired; job ' ||
       CASE WHEN state = 'failed' THEN 'failed (no attempts left)' ELSE 'will be retried' END,
       jsonb_build_object('lost_worker', r.worker_id, 'state', state::text)
FROM r
RETURNING job_id;

-- name: hand_back
-- Graceful shutdown: unfinished attempts go back to waiting without being
-- charged an attempt.
WITH h AS (
    UPDATE {schema}.jobs j
    SET state = 'waiting', attempt = j.attempt - 1, run_at = now(),
        lease_token = NULL, lease_expires_at = NULL
    FROM unnest(%(ids)s::bigint[], %(tokens)s::uuid[]) AS c(id, token)
    WHERE j.id = c.id AND j.lease_token = c.token AND j.state = 'running'
    RETURNING j.id, j.attempt
)
INSERT INTO {schema}.events (job_id, attempt, worker_id, release, kind, message)
SELECT id, attempt + 1, %(worker_id)s, %(release)s, 'handed_back', 'worker shut down before the job finished'
FROM h
RETURNING job_id;

-- name: log_event
INSERT INTO {schema}.events (job_id, attempt, worker_id, release, kind, message, data)
VALUES (%(job_id)s, %(attempt)s, %(worker_id)s, %(release)s, %(kind)s, %(message)s, %(data)s::jsonb);

-- name: save_checkpoint
UPDATE {schema}.jobs SET checkpoint = %(value)s::jsonb
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'running'
RETURNING id;

-- name: register_worker
INSERT INTO {schema}.workers (id, host, pid, queues, concurrency, release)
VALUES (%(worker_id)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s, %(release)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: unregister_worker
DELETE FROM {schema}.workers WHERE id = %(worker_id)s;

-- name: ensure_event_partitions
SELECT {schema}.ensure_event_partitions(%(days_ahead)s);
