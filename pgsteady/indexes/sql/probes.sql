-- Probes of one object for the change workflow (pgsteady/indexes/probes.py,
-- one typed function per query): a relation, an index, a table's columns
-- and files, a backend and its locks, a build in progress, an extension.
-- Objects are named by oid, or by a name resolved once through
-- to_regclass, so a name is never spliced into SQL text. The health
-- checks' snapshot reads (catalog.sql) and these are the package's only
-- reads of pg_catalog and the statistics views; a probe is changed here.

-- The server and one relation.

-- name: server_facts
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_database() AS database,
       pg_backend_pid() AS pid;

-- name: resolve_relation
-- A name as SQL would resolve it (search_path, quoting) to the relation.
SELECT c.oid, c.relkind::text AS relkind, n.nspname AS schema, c.relname AS name,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = to_regclass(%(name)s);

-- name: index_state
-- One index by oid: is it usable, is it unique, what is its definition.
SELECT i.indexrelid AS oid, i.indrelid AS table_oid, i.indisvalid AS is_valid, i.indisready AS is_ready,
       i.indisunique AS is_unique, n.nspname AS schema, c.relname AS name,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
       pg_get_indexdef(i.indexrelid) AS indexdef, pg_relation_size(i.indexrelid) AS bytes
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE i.indexrelid = %(oid)s;

-- name: table_facts
SELECT c.oid, c.relkind::text AS relkind, n.nspname AS schema, c.relname AS name,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
       pg_relation_size(c.oid) AS heap_bytes, pg_total_relation_size(c.oid) AS total_bytes,
       pg_indexes_size(c.oid) AS index_bytes,
       greatest(c.reltuples, 0)::bigint AS estimated_rows, s.n_live_tup AS live_rows,
       greatest(s.last_analyze, s.last_autoanalyze) AS last_analyzed
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.oid = %(oid)s;

-- name: table_indexes
SELECT c.relname AS name, pg_get_indexdef(i.indexrelid) AS indexdef, pg_relation_size(i.indexrelid) AS bytes,
       i.indisvalid AS is_valid, i.indisunique AS is_unique, s.idx_scan
FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = i.indexrelid
WHERE i.indrelid = %(oid)s
ORDER BY c.relname;

-- name: key_widths
-- Average widths of the indexed columns, for the size estimate.
SELECT coalesce(sum(s.avg_width), 0)::int AS width
FROM pg_stats s
WHERE s.schemaname = %(schema)s AND s.tablename = %(table)s AND s.attname = ANY(%(columns)s);

-- name: relation_size
SELECT pg_relation_size(%(oid)s) AS bytes;

-- A table's columns, constraints and size, for the lint of a migration.

-- name: column_type
SELECT t.typname, a.atttypmod, format_type(a.atttypid, a.atttypmod) AS shown
FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
WHERE a.attrelid = to_regclass(%(table)s) AND a.attname = %(column)s AND a.attnum > 0 AND NOT a.attisdropped;

-- name: relation_bytes
SELECT pg_total_relation_size(c.oid) AS bytes FROM pg_class c WHERE c.oid = to_regclass(%(table)s);

-- name: function_volatility
-- The most volatile overload of each name: 'v' > 's' > 'i'.
SELECT p.proname::text, max(p.provolatile::text) AS volatility
FROM pg_proc p WHERE p.proname = ANY(%(names)s::text[])
GROUP BY p.proname;

-- name: not_null_proven
-- SET NOT NULL skips its scan when the column is NOT NULL already or a
-- validated CHECK (col IS NOT NULL) proves it (PostgreSQL 12+).
SELECT EXISTS (
    SELECT FROM pg_attribute a
    WHERE a.attrelid = to_regclass(%(table)s) AND a.attname = %(column)s AND a.attnotnull
) OR EXISTS (
    SELECT FROM pg_constraint c
    WHERE c.conrelid = to_regclass(%(table)s) AND c.contype = 'c' AND c.convalidated
      AND pg_get_constraintdef(c.oid) = 'CHECK ((' || quote_ident(%(column)s) || ' IS NOT NULL))'
) AS proven;

-- name: column_checks
-- CHECK constraints that read the column: a change of its type rechecks them on every row.
SELECT count(*) AS checks
FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
WHERE c.conrelid = to_regclass(%(table)s) AND a.attname = %(column)s AND c.contype = 'c';

-- name: relation_files
-- The files behind a table, its TOAST table and its indexes: a new
-- relfilenode after a statement means it was rewritten.
SELECT c.oid, n.nspname || '.' || c.relname AS relname, c.relkind::text AS relkind,
       pg_relation_filenode(c.oid) AS filenode
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = %(oid)s
   OR c.oid = (SELECT reltoastrelid FROM pg_class WHERE oid = %(oid)s)
   OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = %(oid)s)
ORDER BY c.oid;

-- name: schema_tables
SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind = 'r';

-- name: locks_of_backend
-- The relation locks a backend holds or waits for, by relation name.
SELECT coalesce(n.nspname || '.' || c.relname, l.relation::text) AS relation, c.relname, n.nspname AS schema,
       l.mode, l.granted
FROM pg_locks l
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE l.pid = %(pid)s AND l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (n.nspname IS NULL OR n.nspname NOT IN ('pg_catalog', 'information_schema'));

-- Backends: who runs, who waits for whom, who holds a table.

-- name: backends
-- What these backends are doing, and since when: a missing pid has ended.
-- backend_start tells a pid reused by a new backend from the one recorded.
SELECT pid, state, wait_event_type, wait_event, query, backend_start, xact_start
  FROM pg_stat_activity WHERE pid = ANY(%(pids)s::int[])

-- name: backend_self
SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid();

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

-- Builds in progress.

-- name: index_builds
-- Every CREATE INDEX / REINDEX running in this database, or only the one of
-- backend %(pid)s: the health checks' snapshot (NULL), the dashboard (NULL)
-- and `change apply --wait` (its build's pid) read this one query. A role
-- without pg_read_all_stats sees other roles' rows with relid and
-- index_relid NULL, so the relations each backend has locked come along: a
-- build holds a session lock on its table for the whole build.
SELECT p.pid, p.relid AS table_oid, p.index_relid AS index_oid,
       c.relname::text AS table_name, i.relname::text AS index_name,
       p.command, p.phase,
       p.lockers_total, p.lockers_done, p.current_locker_pid,
       p.blocks_total, p.blocks_done, p.tuples_total, p.tuples_done,
       p.partitions_total, p.partitions_done,
       a.wait_event_type, a.wait_event, a.query_start,
       (SELECT array_agg(l.relation) FROM pg_locks l
         WHERE l.pid = p.pid AND l.locktype = 'relation' AND l.granted) AS locked
  FROM pg_stat_progress_create_index p
  LEFT JOIN pg_class c ON c.oid = p.relid
  LEFT JOIN pg_class i ON i.oid = p.index_relid
  LEFT JOIN pg_stat_activity a ON a.pid = p.pid
 WHERE p.datname = current_database()
   AND (%(pid)s::int IS NULL OR p.pid = %(pid)s::int)
 ORDER BY a.query_start NULLS LAST, p.pid

-- Extensions and what the workflow asks of them.

-- name: extension
-- Can the extension be created here, and the schema it is installed in
-- (NULL: not installed). pg_stat_statements, pgstattuple and HypoPG are
-- asked for by this one query.
SELECT EXISTS (SELECT FROM pg_available_extensions WHERE name = %(name)s) AS available,
       (SELECT n.nspname::text FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = %(name)s) AS schema

-- name: hypopg_create
-- A hypothetical index: in this backend's memory only, seen by EXPLAIN (not ANALYZE).
SELECT indexrelid, indexname FROM hypopg_create_index(%(ddl)s);

-- name: hypopg_size
SELECT hypopg_relation_size(%(oid)s) AS bytes;

-- name: statements_naming
-- The statements of this database whose text names a table (the caller
-- parses them to keep those that really do), optionally only those that
-- write, most called first, with their cumulative times. {pgss} is the
-- extension's schema, filled in with sql.Identifier.
SELECT s.queryid, s.calls, s.total_exec_time, s.query
  FROM {pgss}.pg_stat_statements s
 WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
   AND s.query ILIKE %(pattern)s
   AND (NOT %(writes)s OR s.query ~* '^\s*(insert|update|delete|with|merge)\M')
 ORDER BY s.calls DESC
 LIMIT %(limit)s

-- What writing to a table costs, and the rehearsals' scratch schemas.

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

-- name: rehearsal_schemas
-- Scratch schemas of rehearsals, with the comment naming the backend that made each.
SELECT n.nspname AS schema, obj_description(n.oid, 'pg_namespace') AS owner
FROM pg_namespace n
WHERE n.nspname LIKE 'pgsteady\_rehearsal\_%%';
