-- The workers table: one row per worker process, registered at start,
-- renewed by the heartbeat (attempts.sql), removed at shutdown or pruned.

-- name: register_worker
INSERT INTO {schema}.workers (id, host, pid, queues, concurrency, release)
VALUES (%(worker_id)s, %(host)s, %(pid)s, %(queues)s, %(concurrency)s, %(release)s)
ON CONFLICT (id) DO UPDATE SET heartbeat_at = now();

-- name: unregister_worker
DELETE FROM {schema}.workers WHERE id = %(worker_id)s;

-- name: prune_workers
-- Rows of workers that stopped heartbeating long ago (killed without a goodbye).
DELETE FROM {schema}.workers WHERE heartbeat_at < now() - %(retention)s::interval;

-- name: dashboard_running_by_worker
-- The running jobs per worker, for the Workers page (the workers are the
-- status snapshot's). Plan: a scan of a partial index on state = 'running'
-- (jobs_lease_idx or jobs_running_queue_idx: a few hundred entries, never
-- the finished history) and a hash aggregate by worker_id.
SELECT worker_id, count(*)::int AS running
FROM {schema}.jobs
WHERE state = 'running' AND worker_id IS NOT NULL
GROUP BY worker_id;
