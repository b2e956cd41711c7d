-- The per-job history (the events table, partitioned by day): the events
-- written on their own (most are written by the statement in jobs.sql or
-- attempts.sql that caused them), the history read back, the partitions.

-- name: log_event
INSERT INTO {schema}.events (job_id, attempt, worker_id, release, kind, message, data)
VALUES (%(job_id)s, %(attempt)s, %(worker_id)s, %(release)s, %(kind)s, %(message)s, %(data)s::jsonb);

-- name: record_lost_leases
INSERT INTO {schema}.events (job_id, worker_id, release, kind, message)
SELECT id, %(worker_id)s, %(release)s, 'late_write_rejected',
       'heartbeat rejected: this attempt no longer holds the lease'
FROM unnest(%(ids)s::bigint[]) AS c(id);

-- name: job_events
SELECT created_at, kind, attempt, worker_id, release, message, data
FROM {schema}.events WHERE job_id = %(id)s
ORDER BY created_at, id;

-- name: ensure_event_partitions
SELECT {schema}.ensure_event_partitions(%(days_ahead)s);

-- name: event_partitions
SELECT c.relname, pg_get_expr(c.relpartbound, c.oid)
FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = '{schema}.events'::regclass AND c.relname ~ '^events_[0-9]{{8}}$'
ORDER BY c.relname;
