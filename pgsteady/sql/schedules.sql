-- Cron schedules (the schedules and schedule_runs tables): registration,
-- the scheduler's pass, and the `schedules` commands.

-- name: upsert_schedule
INSERT INTO {schema}.schedules (name, cron, tz, task, queue, priority, max_attempts, args, on_missed, max_waiting,
                                next_run_at)
VALUES (%(name)s, %(cron)s, %(tz)s, %(task)s, %(queue)s, %(priority)s, %(max_attempts)s, %(args)s::jsonb,
        %(on_missed)s, %(max_waiting)s, %(next_run_at)s)
ON CONFLICT (name) DO UPDATE SET
    cron = EXCLUDED.cron, tz = EXCLUDED.tz, task = EXCLUDED.task, queue = EXCLUDED.queue,
    priority = EXCLUDED.priority, max_attempts = EXCLUDED.max_attempts, args = EXCLUDED.args,
    on_missed = EXCLUDED.on_missed, max_waiting = EXCLUDED.max_waiting, updated_at = now(),
    next_run_at = CASE WHEN {schema}.schedules.paused THEN {schema}.schedules.next_run_at ELSE EXCLUDED.next_run_at END;

-- name: active_schedules
SELECT name, cron, tz, task, args, on_missed, max_waiting FROM {schema}.schedules WHERE NOT paused ORDER BY name;

-- name: delete_schedule
DELETE FROM {schema}.schedules WHERE name = %(name)s RETURNING name;

-- name: lock_schedule
SELECT paused, last_run_at, now() FROM {schema}.schedules WHERE name = %(name)s FOR UPDATE;

-- name: start_schedule
UPDATE {schema}.schedules SET last_run_at = %(at)s, next_run_at = %(next_run_at)s, updated_at = now()
WHERE name = %(name)s;

-- name: waiting_runs
-- Runs of this schedule enqueued but not picked up yet (see max_waiting).
SELECT count(*) FROM {schema}.schedule_runs r JOIN {schema}.jobs j ON j.id = r.job_id
WHERE r.schedule = %(name)s AND j.state = 'waiting';

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

-- name: schedule_rows
-- last_run_at is the time of the last run that enqueued a job (the newest
-- schedule_runs row, through its primary key, else the last job's creation):
-- the schedules row's own last_run_at also marks where a new schedule starts
-- counting, which is not a run. A paused schedule has no next run.
SELECT s.name, s.cron, s.tz, s.task, s.queue, s.on_missed, s.paused,
       CASE WHEN s.paused THEN NULL ELSE s.next_run_at END AS next_run_at,
       coalesce((SELECT max(r.scheduled_at) FROM {schema}.schedule_runs r
                 WHERE r.schedule = s.name AND r.job_id IS NOT NULL), j.created_at) AS last_run_at,
       s.last_job_id, j.state::text AS last_outcome
FROM {schema}.schedules s LEFT JOIN {schema}.jobs j ON j.id = s.last_job_id
WHERE %(name)s::text IS NULL OR s.name = %(name)s
ORDER BY s.name;

-- name: prune_schedule_runs
DELETE FROM {schema}.schedule_runs WHERE enqueued_at < now() - %(retention)s::interval;
