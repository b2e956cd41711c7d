-- Background duties: leader election, cron, pruning, partitions, queue controls.

-- name: take_lead
-- Wins the leadership when nobody holds it or the holder's lease has passed;
-- every win increments the fencing token. Returns nothing when another
-- worker's lease is still running.
INSERT INTO {schema}.leader AS l (name, worker_id, elected_at, renewed_at, expires_at, fencing_token)
VALUES (%(name)s, %(worker_id)s, now(), now(), now() + %(lease)s::interval, 1)
ON CONFLICT (name) DO UPDATE SET
    worker_id = EXCLUDED.worker_id, elected_at = now(), renewed_at = now(),
    expires_at = EXCLUDED.expires_at, fencing_token = l.fencing_token + 1
WHERE l.expires_at <= now() OR l.worker_id = EXCLUDED.worker_id
RETURNING fencing_token;

-- name: renew_lead
-- Matches nothing once the lease has passed or another worker holds it.
UPDATE {schema}.leader SET renewed_at = now(), expires_at = now() + %(lease)s::interval
WHERE name = %(name)s AND worker_id = %(worker_id)s AND fencing_token = %(fencing_token)s
  AND expires_at > now()
RETURNING fencing_token;

-- name: resign_lead
-- Ends the lease at once, so a follower takes over at its next try; the row
-- (and its fencing token) stays.
UPDATE {schema}.leader SET expires_at = now()
WHERE name = %(name)s AND worker_id = %(worker_id)s AND fencing_token = %(fencing_token)s;

-- name: upsert_schedule
INSERT INTO {schema}.schedules (name, cron, tz, task, queue, priority, max_attempts, args, on_missed, next_run_at)
VALUES (%(name)s, %(cron)s, %(tz)s, %(task)s, %(queue)s, %(priority)s, %(max_attempts)s, %(args)s::jsonb,
        %(on_missed)s, %(next_run_at)s)
ON CONFLICT (name) DO UPDATE SET
    cron = EXCLUDED.cron, tz = EXCLUDED.tz, task = EXCLUDED.task, queue = EXCLUDED.queue,
    priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts, args = EXCLUDED.args,
    on_missed = EXCLUDED.on_missed, updated_at = now(),
    next_run_at = CASE WHEN {schema}.schedules.paused THEN {schema}.schedules.next_run_at ELSE EXCLUDED.next_run_at END;

-- name: active_schedules
SELECT name, cron, tz, task, args, on_missed FROM {schema}.schedules WHERE NOT paused ORDER BY name;

-- name: delete_schedule
DELETE FROM {schema}.schedules WHERE name = %(name)s RETURNING name;

-- name: lock_schedule
SELECT paused, last_run_at, now() FROM {schema}.schedules WHERE name = %(name)s FOR UPDATE;

-- name: start_schedule
UPDATE {schema}.schedules SET last_run_at = %(at)s, next_run_at = %(next_run_at)s, updated_at = now()
WHERE name = %(name)s;

-- name: claim_schedule_run
-- The guarantee: one row, so one job, per schedule and scheduled time.
INSERT INTO {schema}.schedule_runs (schedule, scheduled_at) VALUES (%(name)s, %(at)s)
ON CONFLICT DO NOTHING
RETURNING scheduled_at;

-- name: enqueue_scheduled
WITH j AS (
    INSERT INTO {schema}.jobs (queue, task, args, priority, max_attempts)
    SELECT queue, task, args, priority, max_attempts FROM {schema}.schedules WHERE name = %(name)s
    RETURNING id
)
UPDATE {schema}.schedule_runs r SET job_id = j.id FROM j
WHERE r.schedule = %(name)s AND r.scheduled_at = %(at)s
RETURNING j.id;

-- name: finish_schedule_pass
UPDATE {schema}.schedules
SET last_run_at = %(last_run_at)s, next_run_at = %(next_run_at)s,
    last_job_id = coalesce(%(last_job_id)s, last_job_id), updated_at = now()
WHERE name = %(name)s;

-- name: schedule_event
INSERT INTO {schema}.events (kind, message, data, worker_id, release)
VALUES (%(kind)s, %(message)s, %(data)s::jsonb, %(worker_id)s, %(release)s);

-- name: list_schedules
SELECT s.name, s.cron, s.tz, s.task, s.queue, s.on_missed, s.paused, s.next_run_at, s.last_run_at,
       s.last_job_id, j.state::text AS last_outcome
FROM {schema}.schedules s LEFT JOIN {schema}.jobs j ON j.id = s.last_job_id
ORDER BY s.name;

-- name: set_schedule_paused
UPDATE {schema}.schedules SET paused = %(paused)s, updated_at = now() WHERE name = %(name)s
RETURNING name;

-- name: run_schedule_now
WITH j AS (
    INSERT INTO {schema}.jobs (queue, task, args, priority, max_attempts)
    SELECT queue, task, args, priority, max_attempts FROM {schema}.schedules WHERE name = %(name)s
    RETURNING id, attempt
), ev AS (
    INSERT INTO {schema}.events (job_id, attempt, worker_id, kind, message)
    SELECT id, attempt, %(actor)s, 'manual_run', 'schedule ' || %(name)s || ' run by hand' FROM j
)
SELECT id FROM j;

-- name: prune_jobs
-- One small batch of finished jobs older than their state's retention.
DELETE FROM {schema}.jobs WHERE id IN (
    SELECT id FROM {schema}.jobs
    WHERE state = %(state)s::{schema}.job_state AND finished_at IS NOT NULL
      AND finished_at < now() - %(retention)s::interval
    LIMIT %(batch)s
);

-- name: prune_schedule_runs
DELETE FROM {schema}.schedule_runs WHERE enqueued_at < now() - %(retention)s::interval;

-- name: prune_workers
-- Rows of workers that stopped heartbeating long ago (killed without a goodbye).
DELETE FROM {schema}.workers WHERE heartbeat_at < now() - %(retention)s::interval;

-- name: event_partitions
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = '{schema}.events'::regclass AND c.relname ~ '^events_[0-9]{{8}}$'
ORDER BY c.relname;

-- name: list_queues
WITH known AS (
    SELECT queue FROM {schema}.queues
    UNION
    SELECT DISTINCT queue FROM {schema}.jobs WHERE state IN ('waiting', 'running')
)
SELECT k.queue, coalesce(q.paused, false) AS paused, q.max_running, q.max_per_second,
       (SELECT count(*) FROM {schema}.jobs j WHERE j.queue = k.queue AND j.state = 'waiting') AS waiting,
       (SELECT count(*) FROM {schema}.jobs j WHERE j.queue = k.queue AND j.state = 'running') AS running
FROM known k LEFT JOIN {schema}.queues q USING (queue)
ORDER BY k.queue;

-- name: set_queue_paused
WITH q AS (
    INSERT INTO {schema}.queues (queue, paused) VALUES (%(queue)s, %(paused)s)
    ON CONFLICT (queue) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()
    RETURNING queue
)
SELECT queue, pg_notify(%(channel)s, 'queues') FROM q;

-- name: set_queue_limits
WITH q AS (
    INSERT INTO {schema}.queues (queue, max_running, max_per_second)
    VALUES (%(queue)s, %(max_running)s, %(max_per_second)s)
    ON CONFLICT (queue) DO UPDATE SET max_running = EXCLUDED.max_running,
        max_per_second = EXCLUDED.max_per_second, updated_at = now()
    RETURNING queue
)
SELECT queue, pg_notify(%(channel)s, 'queues') FROM q;

-- name: limited_queues
SELECT queue FROM {schema}.queues WHERE NOT paused AND (max_running IS NOT NULL OR max_per_second IS NOT NULL);

-- name: lock_queue
SELECT queue FROM {schema}.queues WHERE queue = %(queue)s FOR UPDATE;

-- name: claim_limited
-- Runs right after lock_queue in the same transaction: holding the queue's
-- row lock, this statement's snapshot sees every claim committed before it,
-- so the count of running jobs and the per-second window are exact.
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
    UPDATE {schema}.jobs j
    SET state = 'running', attempt = j.attempt + 1, lease_token = gen_random_uuid(),
        lease_expires_at = statement_timestamp() + %(lease)s::interval, worker_id = %(worker_id)s,
        release = %(release)s, started_at = statement_timestamp(), cancel_requested = false
    FROM picked WHERE j.id = picked.id
    RETURNING j.id, j.queue, j.task, j.args, j.key, j.attempt, j.max_attempts, j.lease_token::text,
              j.checkpoint, j.created_at, j.run_at
), counted AS (
    UPDATE {schema}.queues
    SET window_start = date_trunc('second', statement_timestamp()),
        window_count = (SELECT in_window FROM q) + (SELECT count(*) FROM claimed)
    WHERE queue = %(queue)s AND max_per_second IS NOT NULL AND EXISTS (SELECT 1 FROM claimed)
)
SELECT * FROM claimed;
