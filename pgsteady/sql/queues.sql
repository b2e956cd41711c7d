-- Queue and schedule administration read by people (pgsteady/queues.py,
-- pgsteady/schedule_admin.py): the `queues` and `schedules` commands and the
-- dashboard. The writes they make are in maintenance.sql, beside the claim
-- and the scheduler that obey them.

-- name: record_queue_action
-- A queue has no row of history of its own: its actions are events without a
-- job, found again through events_queue_idx.
INSERT INTO {schema}.events (kind, message, worker_id, data)
VALUES (%(kind)s, %(message)s, %(actor)s, jsonb_build_object('queue', %(queue)s::text) || %(data)s::jsonb);

-- name: queue_history
SELECT created_at, kind, worker_id AS actor, message, data
FROM {schema}.events
WHERE job_id IS NULL AND kind IN ('queue_paused', 'queue_resumed', 'queue_limits') AND data ->> 'queue' = %(queue)s
ORDER BY created_at DESC
LIMIT %(limit)s;

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
