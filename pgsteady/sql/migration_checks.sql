-- Schema migrations: what lint and the rehearsal read from the catalogue.
-- Tables are named as SQL names them (quoted where needed) and resolved
-- through to_regclass, so a name is never spliced into SQL text.

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

-- name: session_paths
SELECT current_schema() AS home, current_setting('search_path') AS search_path;

-- name: set_search_path
-- For the rehearsal: the scratch schema first, so unqualified names find the copies.
SELECT set_config('search_path', %(path)s, false);

-- name: schema_tables
SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relkind = 'r';

-- name: column_checks
-- CHECK constraints that read the column: a change of its type rechecks them on every row.
SELECT count(*) AS checks
FROM pg_constraint c JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
WHERE c.conrelid = to_regclass(%(table)s) AND a.attname = %(column)s AND c.contype = 'c';
