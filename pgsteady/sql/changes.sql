-- Index changes and migrations: the record (changes, change_steps), the
-- build's lock, and the rehearsal's session settings. What the steps read
-- from the catalogue is in pgsteady/indexes/sql/probes.sql.

-- name: upsert_change
INSERT INTO {schema}.changes AS c (id, title, owner, reason, file_path, statement, rollback, file_sha)
VALUES (%(id)s, %(title)s, %(owner)s, %(reason)s, %(file_path)s, %(statement)s, %(rollback)s, %(file_sha)s)
ON CONFLICT (id) DO UPDATE
SET title = excluded.title, owner = excluded.owner, reason = excluded.reason,
    file_path = excluded.file_path, statement = excluded.statement,
    rollback = coalesce(excluded.rollback, c.rollback), file_sha = excluded.file_sha, updated_at = now()
RETURNING id;

-- name: get_change
SELECT id, title, owner, reason, file_path, statement, rollback, file_sha, status, verdict,
       plan, rehearsal, verify, created_at, updated_at
FROM {schema}.changes WHERE id = %(id)s;

-- name: list_changes
SELECT c.id, c.title, c.owner, c.status, c.verdict, c.file_path, c.updated_at,
       (SELECT s.step FROM {schema}.change_steps s WHERE s.change_id = c.id AND s.status = 'done'
         ORDER BY s.id DESC LIMIT 1) AS last_step_done
FROM {schema}.changes c
ORDER BY c.updated_at DESC
LIMIT %(limit)s;

-- name: move_change
-- The one writer of changes.status (pgsteady/changes/states.py): the move
-- happens only from a status the state model allows, checked here so that
-- two processes cannot interleave.
UPDATE {schema}.changes
SET status = %(to)s,
    verdict = CASE WHEN %(clear_verdict)s THEN NULL ELSE coalesce(%(verdict)s, verdict) END,
    updated_at = now()
WHERE id = %(id)s AND status = ANY(%(allowed)s::text[])
RETURNING status;

-- name: set_change_plan
UPDATE {schema}.changes SET plan = %(figures)s, updated_at = now() WHERE id = %(id)s;

-- name: set_change_rehearsal
UPDATE {schema}.changes SET rehearsal = %(figures)s, updated_at = now() WHERE id = %(id)s;

-- name: set_change_verify
UPDATE {schema}.changes SET verify = %(figures)s, updated_at = now() WHERE id = %(id)s;

-- name: start_step
INSERT INTO {schema}.change_steps (change_id, step, status, command, file_sha, job_id, details)
VALUES (%(change_id)s, %(step)s, %(status)s, %(command)s, %(file_sha)s, %(job_id)s, %(details)s)
RETURNING id;

-- name: finish_step
-- Only a step still open is finished: a second writer (the job and the
-- command that waits for it) cannot overwrite the first outcome.
UPDATE {schema}.change_steps
SET status = %(status)s, summary = %(summary)s, finished_at = now(),
    details = coalesce(details, jsonb_build_object()) || coalesce(%(details)s::jsonb, jsonb_build_object())
WHERE id = %(id)s AND status IN ('running', 'queued')
RETURNING id, change_id, step;

-- name: note_step
-- Facts learnt while a step runs (the build's pid, its latest phase).
UPDATE {schema}.change_steps
SET status = CASE WHEN status = 'queued' THEN 'running' ELSE status END,
    details = coalesce(details, jsonb_build_object()) || %(details)s::jsonb
WHERE id = %(id)s;

-- name: change_steps
SELECT id, step, status, command, file_sha, job_id, summary, details, started_at, finished_at
FROM {schema}.change_steps WHERE change_id = %(change_id)s
ORDER BY id;

-- name: step_of_job
SELECT id, change_id, step, status, file_sha FROM {schema}.change_steps
WHERE job_id = %(job_id)s ORDER BY id DESC LIMIT 1;

-- name: take_build_slot
-- One build per table: the slot row (changes/slots.py). Won when nobody
-- holds it or the holder's lease has passed; every win increments the
-- fencing token. Returns nothing while another build's lease runs.
INSERT INTO {schema}.build_slots AS s (table_oid, holder, job_id, fencing_token, taken_at, renewed_at, expires_at)
VALUES (%(table_oid)s::oid, %(holder)s, %(job_id)s, 1, now(), now(), now() + %(lease)s::interval)
ON CONFLICT (table_oid) DO UPDATE SET
    holder = EXCLUDED.holder, job_id = EXCLUDED.job_id, taken_at = now(), renewed_at = now(),
    expires_at = EXCLUDED.expires_at, fencing_token = s.fencing_token + 1
WHERE s.expires_at <= now()
RETURNING fencing_token;

-- name: renew_build_slot
-- Matches nothing once the lease has passed or another build holds the slot.
UPDATE {schema}.build_slots SET renewed_at = now(), expires_at = now() + %(lease)s::interval
WHERE table_oid = %(table_oid)s::oid AND holder = %(holder)s AND fencing_token = %(fencing_token)s
  AND expires_at > now()
RETURNING fencing_token;

-- name: release_build_slot
-- Ends the lease at once, so a waiting build takes the slot at its next try;
-- the row (and its fencing token) stays.
UPDATE {schema}.build_slots SET expires_at = now()
WHERE table_oid = %(table_oid)s::oid AND holder = %(holder)s AND fencing_token = %(fencing_token)s
  AND expires_at > now();

-- name: build_slot_holder
-- Who holds the table's slot now, if anyone.
SELECT holder, job_id, fencing_token, extract(epoch FROM expires_at - now())::float8 AS expires_in
FROM {schema}.build_slots
WHERE table_oid = %(table_oid)s::oid AND expires_at > now();

-- name: get_step
SELECT id, change_id, step, status, command, job_id, summary, details, started_at, finished_at
FROM {schema}.change_steps WHERE id = %(id)s;

-- name: open_command_steps
-- Steps a command runs itself (not a job) that are still open.
SELECT id, change_id, step, details FROM {schema}.change_steps
WHERE status = 'running' AND job_id IS NULL
ORDER BY id;

-- name: open_job_changes
-- Changes with a job step still open: their job may have ended without closing it.
SELECT DISTINCT change_id FROM {schema}.change_steps
WHERE status IN ('queued', 'running') AND job_id IS NOT NULL;

-- name: session_paths
SELECT current_schema() AS home, current_setting('search_path') AS search_path;

-- name: set_search_path
-- For the rehearsal: the scratch schema first, so unqualified names find the copies.
SELECT set_config('search_path', %(path)s, false);
