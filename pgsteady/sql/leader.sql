-- The leader lease of the maintenance duties (the leader table,
-- pgsteady/maintenance/leader.py).

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
