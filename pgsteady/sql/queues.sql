-- Per-queue controls (the queues table): pause, limits, and what the claim reads.

-- name: set_queue_paused
WITH q AS (
    INSERT INTO {schema}.queues (queue, paused) VALUES (%(queue)s, %(paused)s)
    ON CONFLICT (queue) DO UPDATE SET paused = EXCLUDED.paused, updated_at = now()
    RETURNING queue
)
SELECT queue, pg_notify(%(channel)s, %(payload)s) FROM q;

-- name: set_queue_limits
WITH q AS (
    INSERT INTO {schema}.queues (queue, max_running, max_per_second)
    VALUES (%(queue)s, %(max_running)s, %(max_per_second)s)
    ON CONFLICT (queue) DO UPDATE SET max_running = EXCLUDED.max_running,
        max_per_second = EXCLUDED.max_per_second, updated_at = now()
    RETURNING queue
)
SELECT queue, pg_notify(%(channel)s, %(payload)s) FROM q;

-- name: limited_queues
SELECT queue FROM {schema}.queues WHERE NOT paused AND (max_running IS NOT NULL OR max_per_second IS NOT NULL);

-- name: lock_queue
SELECT queue FROM {schema}.queues WHERE queue = %(queue)s FOR UPDATE;

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
