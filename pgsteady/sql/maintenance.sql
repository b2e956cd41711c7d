-- Background duties: leader election, pruning, partitions.

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
