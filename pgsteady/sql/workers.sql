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

-- name: dashboard_workers
-- The workers table is small (one row per live or recently dead process).
SELECT w.id, w.host, w.pid, w.queues, w.concurrency, w.release, w.started_at, w.heartbeat_at,
       extract(epoch FROM now() - w.heartbeat_at)::float8 AS heartbeat_age,
       (SELECT count(*) FROM {schema}.jobs j WHERE j.state = 'running' AND j.worker_id = w.id)::int AS running
FROM {schema}.workers w
ORDER BY w.heartbeat_at DESC, w.id;
