-- Index changes: the record (changes, change_steps) and what the steps read
-- from the catalogue. Catalogue queries name their objects by oid, resolved
-- once through to_regclass, so a name is never spliced into SQL text.

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

-- name: job_outcome
SELECT state::text AS state, attempt, max_attempts, errors -> -1 ->> 'error' AS last_error, finished_at
FROM {schema}.jobs WHERE id = %(id)s;

-- name: job_failure_window
-- Finished jobs in a time window, for the watch after a release.
SELECT count(*) FILTER (WHERE state = 'failed') AS failed,
       count(*) FILTER (WHERE state = 'succeeded') AS succeeded,
       count(*) AS finished
FROM {schema}.jobs
WHERE finished_at >= %(since)s AND finished_at < %(until)s;

-- name: try_build_lock
-- One build per table: a session advisory lock keyed on the table's oid,
-- held on the build connection until the build and its cleanup are over.
SELECT pg_try_advisory_lock(%(space)s, %(table_oid)s::oid::int) AS got;

-- name: release_build_lock
SELECT pg_advisory_unlock(%(space)s, %(table_oid)s::oid::int) AS released;

-- name: build_lock_holder
SELECT l.pid, a.application_name, a.query, a.state
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = %(space)s::int::oid AND l.objid = %(table_oid)s::oid AND l.objsubid = 2;

-- name: build_progress
SELECT p.pid, p.relid AS table_oid, p.index_relid AS index_oid, p.command, p.phase,
       p.lockers_total, p.lockers_done, p.current_locker_pid,
       p.blocks_total, p.blocks_done, p.tuples_total, p.tuples_done,
       p.partitions_total, p.partitions_done,
       a.wait_event_type, a.wait_event
FROM pg_stat_progress_create_index p LEFT JOIN pg_stat_activity a ON a.pid = p.pid
WHERE p.pid = %(pid)s;

-- name: backend_activity
SELECT pid, state, wait_event_type, wait_event, query, backend_start, xact_start
FROM pg_stat_activity WHERE pid = %(pid)s;

-- name: blockers
-- Who a backend waits for, with what they are running.
SELECT b.pid, a.usename AS role, a.application_name, a.state, a.query,
       extract(epoch FROM now() - a.xact_start)::float AS xact_seconds
FROM unnest(pg_blocking_pids(%(pid)s)) AS b(pid)
LEFT JOIN pg_stat_activity a ON a.pid = b.pid
ORDER BY b.pid;

-- name: table_lockers
-- Sessions that hold a lock on the table that a concurrent index build
-- (SHARE UPDATE EXCLUSIVE) has to wait for: asked after a lock timeout,
-- when the wait itself is over and pg_blocking_pids has nothing to say.
SELECT DISTINCT l.pid, a.usename AS role, a.application_name, a.state, a.query,
       extract(epoch FROM now() - a.xact_start)::float AS xact_seconds
FROM pg_locks l LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.relation = %(table_oid)s AND l.granted AND l.pid <> pg_backend_pid()
  AND l.mode IN ('ShareUpdateExclusiveLock', 'ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock',
                 'AccessExclusiveLock')
ORDER BY l.pid;

-- name: hypopg_status
SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = 'hypopg') AS available,
       EXISTS (SELECT FROM pg_extension WHERE extname = 'hypopg') AS installed;

-- name: get_step
SELECT id, change_id, step, status, command, job_id, summary, details, started_at, finished_at
FROM {schema}.change_steps WHERE id = %(id)s;

-- name: hypopg_create
-- A hypothetical index: in this backend's memory only, seen by EXPLAIN (not ANALYZE).
SELECT indexrelid, indexname FROM hypopg_create_index(%(ddl)s);

-- name: hypopg_size
SELECT hypopg_relation_size(%(oid)s) AS bytes;

-- name: statements_for_table
-- The statements whose text names the table, for the watch after a release.
SELECT queryid, calls, total_exec_time, left(query, 200) AS query
FROM pg_stat_statements WHERE query ILIKE %(pattern)s;

-- name: backend_self
SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid();

-- name: live_backends
-- Which backends are alive, for telling a killed command's leftovers from a running one's.
SELECT pid, backend_start FROM pg_stat_activity WHERE pid = ANY(%(pids)s::int[]);

-- name: rehearsal_schemas
-- Scratch schemas of rehearsals, with the comment naming the backend that made each.
SELECT n.nspname AS schema, obj_description(n.oid, 'pg_namespace') AS owner
FROM pg_namespace n
WHERE n.nspname LIKE 'pgsteady\_rehearsal\_%%';

-- name: open_command_steps
-- Steps a command runs itself (not a job) that are still open.
SELECT id, change_id, step, details FROM {schema}.change_steps
WHERE status = 'running' AND job_id IS NULL
ORDER BY id;

-- name: open_job_changes
-- Changes with a job step still open: their job may have ended without closing it.
SELECT DISTINCT change_id FROM {schema}.change_steps
WHERE status IN ('queued', 'running') AND job_id IS NOT NULL;

-- name: write_counters
-- What writing to a table costs, cumulative since the statistics reset: rows
-- written, how many updates were HOT (no index touched), the index size, and
-- the WAL position (server-wide) to measure WAL growth between two readings.
SELECT now() AS at,
       coalesce(s.n_tup_ins, 0) AS inserted, coalesce(s.n_tup_upd, 0) AS updated,
       coalesce(s.n_tup_hot_upd, 0) AS hot_updated, coalesce(s.n_tup_del, 0) AS deleted,
       pg_indexes_size(c.oid) AS index_bytes, pg_relation_size(c.oid) AS table_bytes,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint END AS wal_position
FROM pg_class c LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.oid = %(oid)s;

-- name: partition_write_counters
-- The same counters summed over a partitioned table's partitions.
SELECT now() AS at,
       coalesce(sum(s.n_tup_ins), 0)::bigint AS inserted, coalesce(sum(s.n_tup_upd), 0)::bigint AS updated,
       coalesce(sum(s.n_tup_hot_upd), 0)::bigint AS hot_updated, coalesce(sum(s.n_tup_del), 0)::bigint AS deleted,
       coalesce(sum(pg_indexes_size(h.inhrelid)), 0)::bigint AS index_bytes,
       coalesce(sum(pg_relation_size(h.inhrelid)), 0)::bigint AS table_bytes,
       CASE WHEN pg_is_in_recovery() THEN NULL
            ELSE pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint END AS wal_position
FROM pg_inherits h LEFT JOIN pg_stat_all_tables s ON s.relid = h.inhrelid
WHERE h.inhparent = %(oid)s;

-- name: write_statements
-- Statements that write and whose text names the table (the caller parses
-- them to keep only those that write to it), with their cumulative times.
SELECT queryid, calls, total_exec_time, query
FROM pg_stat_statements
WHERE query ~* '^\s*(insert|update|delete|with|merge)\M' AND query ILIKE %(pattern)s
ORDER BY calls DESC
LIMIT 200;
