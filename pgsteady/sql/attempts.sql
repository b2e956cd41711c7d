-- A job's running attempt (the jobs row while it is 'running'): the claim,
-- and every write fenced by the attempt's lease token (complete, fail,
-- cancel, heartbeat, rescue, hand back, checkpoint).
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

-- name: _claimed
-- THE CLAIM: the one text that turns picked waiting jobs into running
-- attempts, included as {_claimed} by both claim queries below, so there is
-- one place to change what a claim writes and which row it reads back
-- (read by name: pgsteady/claiming.py, claimed_rows). One clock,
-- statement_timestamp(): the limited claim runs in a transaction that waited
-- for a row lock, where now() would be the time before the wait.
UPDATE {schema}.jobs j
SET state = 'running', attempt = j.attempt + 1, lease_token = gen_random_uuid(),
    lease_expires_at = statement_timestamp() + %(lease)s::interval, worker_id = %(worker_id)s,
    release = %(release)s, started_at = statement_timestamp(),
    cancel_requested = false, cancel_requested_by = NULL
FROM picked WHERE j.id = picked.id
RETURNING j.id, j.queue, j.task, j.args, j.key, j.attempt, j.max_attempts, j.lease_token::text AS lease_token,
          j.checkpoint

-- name: complete_and_claim
-- One statement, one commit per round of the claimer: mark the attempts that
-- finished since the last round succeeded (each fenced by its token, as
-- every write is) and claim up to the limit of waiting jobs from queues
-- without a fleet-wide limit. Completing and claiming in one statement
-- halves the commits and round trips of a busy worker; either half may be
-- empty (no finished attempts, or LIMIT 0 to complete only).
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
    WHERE state = 'waiting' AND run_at <= statement_timestamp()
      AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
      -- Paused queues wait; limited ones are claimed only by claim_limited.
      AND queue NOT IN (SELECT queue FROM {schema}.queues
                        WHERE paused OR max_running IS NOT NULL OR max_per_second IS NOT NULL)
    ORDER BY priority, run_at, id
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), claimed AS (
    {_claimed}
)
SELECT id, queue, task, args, key, attempt, max_attempts, lease_token, checkpoint, NULL::bigint[] AS completed
FROM claimed
UNION ALL
SELECT NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, ARRAY(SELECT id FROM done);

-- name: claim_limited
-- The claim of a queue with a fleet-wide limit. Runs right after lock_queue
-- in the same transaction: holding the queue's row lock, this statement's
-- snapshot sees every claim committed before it, so the count of running
-- jobs and the per-second window are exact.
WITH q AS (
    SELECT max_running, max_per_second,
           CASE WHEN window_start = date_trunc('second', statement_timestamp()) THEN window_count ELSE 0 END AS in_window
    FROM {schema}.queues WHERE queue = %(queue)s AND NOT paused
), allow AS (
    SELECT greatest(0, least(
        %(limit)s::integer,
        coalesce(q.max_running - (SELECT count(*) FROM {schema}.jobs
                                  WHERE queue = %(queue)s AND state = 'running')::integer, %(limit)s::integer),
        coalesce(q.max_per_second - q.in_window, %(limit)s::integer))) AS n
    FROM q
), picked AS (
    SELECT id FROM {schema}.jobs
    WHERE state = 'waiting' AND run_at <= statement_timestamp() AND queue = %(queue)s
    ORDER BY priority, run_at, id
    LIMIT coalesce((SELECT n FROM allow), 0)
    FOR UPDATE SKIP LOCKED
), claimed AS (
    {_claimed}
), counted AS (
    UPDATE {schema}.queues
    SET window_start = date_trunc('second', statement_timestamp()),
        window_count = (SELECT in_window FROM q) + (SELECT count(*) FROM claimed)
    WHERE queue = %(queue)s AND max_per_second IS NOT NULL AND EXISTS (SELECT 1 FROM claimed)
)
SELECT id, queue, task, args, key, attempt, max_attempts, lease_token, checkpoint FROM claimed;

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

-- name: expired_leases
-- Attempts whose lease ran out (worker killed, host lost, network gone),
-- locked for the rescuing transaction. Any live worker may rescue; SKIP
-- LOCKED keeps two rescuers off the same rows.
SELECT id, task, attempt FROM {schema}.jobs
WHERE state = 'running' AND lease_expires_at < now()
ORDER BY lease_expires_at
LIMIT %(limit)s
FOR UPDATE SKIP LOCKED;

-- name: rescue_expired
-- The rows expired_leases locked go back to waiting after the backoff the
-- retry policy chose for each (pgsteady/retries.py), or to failed when they
-- used their last attempt.
WITH r AS (
    UPDATE {schema}.jobs j
    SET state = CASE WHEN j.attempt >= j.max_attempts THEN 'failed' ELSE 'waiting' END::{schema}.job_state,
        run_at = CASE WHEN j.attempt >= j.max_attempts THEN j.run_at ELSE now() + c.backoff END,
        finished_at = CASE WHEN j.attempt >= j.max_attempts THEN now() END,
        key_active = j.key_active AND j.attempt < j.max_attempts,
        lease_token = NULL, lease_expires_at = NULL,
        errors = j.errors || jsonb_build_array(jsonb_build_object(
            'attempt', j.attempt, 'at', now(), 'worker', j.worker_id,
            'error', 'lease expired: worker ' || coalesce(j.worker_id, '?') || ' stopped renewing it'))
    FROM unnest(%(ids)s::bigint[], %(backoffs)s::interval[]) AS c(id, backoff)
    WHERE j.id = c.id AND j.state = 'running' AND j.lease_expires_at < now()
    RETURNING j.id, j.attempt, j.state, j.worker_id, j.run_at
)
INSERT INTO {schema}.events (job_id, attempt, worker_id, release, kind, message, data)
SELECT id, attempt, %(worker_id)s, %(release)s, 'rescued',
       'lease of worker ' || coalesce(r.worker_id, '?') || ' expired; job ' ||
       CASE WHEN state = 'failed' THEN 'failed (no attempts left)' ELSE 'will be retried' END,
       jsonb_build_object('lost_worker', r.worker_id, 'state', state::text,
                          'retry_at', CASE WHEN state = 'waiting' THEN r.run_at END)
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

-- name: save_checkpoint
UPDATE {schema}.jobs SET checkpoint = %(value)s::jsonb
WHERE id = %(id)s AND lease_token = %(token)s AND state = 'running'
RETURNING id;
