-- Background duties: leader election, pruning, partitions.

-- name: try_lead
SELECT pg_try_advisory_lock(hashtext(%(lock)s));

-- name: record_leader
INSERT INTO {schema}.leader (name, worker_id) VALUES (%(name)s, %(worker_id)s)
ON CONFLICT (name) DO UPDATE SET worker_id = EXCLUDED.worker_id, elected_at = now(), renewed_at = now();

-- name: renew_leader
-- Matches nothing once another worker has taken the leadership over.
UPDATE {schema}.leader SET renewed_at = now() WHERE name = %(name)s AND worker_id = %(worker_id)s
RETURNING name;

-- name: end_stale_leader
-- A leader that holds the lock but stopped renewing (frozen process, stuck
-- host) would block every duty forever; after the stale time its session is
-- ended, which releases the lock. Only sessions holding this very lock are
-- touched.
SELECT l.worker_id, pg_terminate_backend(k.pid, 5000)  -- waits (up to 5 s) for the session to end
FROM {schema}.leader l
JOIN pg_locks k ON k.locktype = 'advisory' AND k.granted AND k.objsubid = 1
     AND k.classid::bigint = (hashtext(%(lock)s)::bigint >> 32) & 4294967295
     AND k.objid::bigint = hashtext(%(lock)s)::bigint & 4294967295
     AND k.database = (SELECT oid FROM pg_database WHERE datname = current_database())
WHERE l.name = %(name)s AND l.renewed_at < now() - %(stale)s::interval AND k.pid <> pg_backend_pid();

-- name: resign_leader
DELETE FROM {schema}.leader WHERE name = %(name)s AND worker_id = %(worker_id)s;

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
