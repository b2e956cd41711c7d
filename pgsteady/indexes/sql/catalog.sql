-- Catalogue reads for the index health checks.
--
-- Each query returns every row the checks need in one round trip, so a
-- database with thousands of indexes costs a handful of queries, not one per
-- index. Scope parameters are the same everywhere: %(schema)s (NULL = every
-- non-system schema) and %(table_oid)s (NULL = every table). Names come back
-- already passed through quote_ident() where they end up in generated SQL.

-- name: schema_exists
SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(schema)s) AS found

-- name: server
SELECT current_setting('server_version') AS server_version,
       current_setting('block_size')::int AS block_size,
       pg_is_in_recovery() AS in_recovery,
       current_user AS role,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       d.stats_reset,
       now() AS now
  FROM pg_stat_database d
 WHERE d.datname = current_database()

-- name: indexes
-- One row per index. Arrays are rebuilt with ORDER BY ordinality because the
-- int2vector/oidvector columns have a lower bound of 0, which clients do not
-- all keep. "elements" is pg_get_indexdef(oid, k): the deparsed text of each
-- key or INCLUDE column, so a column and an expression compare the same way.
SELECT i.indexrelid AS oid,
       i.indrelid AS table_oid,
       n.nspname AS schema,
       t.relname AS table,
       c.relname AS name,
       quote_ident(c.relname) AS quoted_name,
       quote_ident(n.nspname) || '.' || quote_ident(c.relname) AS qualified,
       quote_ident(n.nspname) || '.' || quote_ident(t.relname) AS table_qualified,
       c.relkind::text AS relkind,
       t.relkind::text AS table_relkind,
       am.amname AS method,
       i.indisunique AS is_unique,
       i.indisprimary AS is_primary,
       i.indisvalid AS is_valid,
       i.indisready AS is_ready,
       i.indislive AS is_live,
       i.indnkeyatts AS key_count,
       (SELECT array_agg(x ORDER BY o) FROM unnest(i.indkey) WITH ORDINALITY u(x, o)) AS attnums,
       (SELECT array_agg(pg_get_indexdef(i.indexrelid, k::int, true) ORDER BY k)
          FROM generate_series(1, i.indnatts) k) AS elements,
       (SELECT array_agg(x ORDER BY o) FROM unnest(i.indclass) WITH ORDINALITY u(x, o)) AS opclasses,
       (SELECT array_agg(x ORDER BY o) FROM unnest(i.indcollation) WITH ORDINALITY u(x, o)) AS collations,
       (SELECT array_agg(x ORDER BY o) FROM unnest(i.indoption) WITH ORDINALITY u(x, o)) AS options,
       (SELECT array_agg(a.attname::text ORDER BY a.attnum)
          FROM pg_attribute a WHERE a.attrelid = i.indexrelid AND a.attnum > 0) AS index_attnames,
       pg_get_expr(i.indpred, i.indrelid, true) AS predicate,
       pg_get_indexdef(i.indexrelid) AS indexdef,
       con.contype::text AS constraint_type,
       con.conname::text AS constraint_name,
       EXISTS (SELECT 1 FROM pg_inherits h WHERE h.inhrelid = i.indexrelid) AS is_partition,
       pg_relation_size(i.indexrelid) AS bytes,
       c.reltuples::float8 AS reltuples,
       (SELECT option_value::int FROM pg_options_to_table(c.reloptions)
         WHERE option_name = 'fillfactor') AS fillfactor,
       -- The function behind pg_stat_all_indexes.idx_scan: joining the view
       -- would compute all its counters for every index.
       pg_stat_get_numscans(i.indexrelid) AS idx_scan,
       has_table_privilege(i.indrelid, 'SELECT') AS can_read_stats
  FROM pg_index i
  JOIN pg_class c ON c.oid = i.indexrelid
  JOIN pg_class t ON t.oid = i.indrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_am am ON am.oid = c.relam
  LEFT JOIN pg_constraint con ON con.conindid = i.indexrelid AND con.contype IN ('p', 'u', 'x')
 WHERE (%(index_oid)s::oid IS NOT NULL OR (
          n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
          AND t.relpersistence <> 't'
          -- Tables that belong to an extension are the extension's business.
          AND NOT EXISTS (SELECT 1 FROM pg_depend d
                           WHERE d.classid = 'pg_class'::regclass AND d.objid = t.oid
                             AND d.deptype = 'e')
          AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)))
   AND (%(table_oid)s::oid IS NULL OR i.indrelid = %(table_oid)s::oid)
   AND (%(index_oid)s::oid IS NULL OR i.indexrelid = %(index_oid)s::oid)
 ORDER BY n.nspname, t.relname, c.relname

-- name: table_columns
-- The columns of the tables that have indexes, with their type category
-- ('A' array, 'B' boolean, ...). Read in bulk and matched to index columns
-- by the caller: a join per index column costs more than the whole list.
SELECT a.attrelid AS table_oid, a.attnum, a.attname::text AS name, ty.typcategory::text AS category,
       a.attnotnull AS not_null
  FROM pg_attribute a
  JOIN pg_type ty ON ty.oid = a.atttypid
 WHERE a.attrelid = ANY(%(tables)s::oid[]) AND a.attnum > 0 AND NOT a.attisdropped

-- name: foreign_keys
-- Constraints cloned onto partitions (conparentid <> 0) are left out: the
-- parent's constraint is the one a person would fix.
SELECT con.conname::text AS name,
       con.conrelid AS table_oid,
       n.nspname AS schema,
       t.relname AS table,
       t.relkind::text AS table_relkind,
       quote_ident(n.nspname) || '.' || quote_ident(t.relname) AS table_qualified,
       quote_ident(rn.nspname) || '.' || quote_ident(rt.relname) AS referenced,
       (SELECT array_agg(x ORDER BY o) FROM unnest(con.conkey) WITH ORDINALITY u(x, o)) AS attnums,
       (SELECT array_agg(a.attname::text ORDER BY u.o)
          FROM unnest(con.conkey) WITH ORDINALITY u(x, o)
          JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = u.x) AS columns,
       pg_relation_size(t.oid) AS table_bytes,
       greatest(t.reltuples, 0)::float8 AS table_rows
  FROM pg_constraint con
  JOIN pg_class t ON t.oid = con.conrelid
  JOIN pg_namespace n ON n.oid = t.relnamespace
  JOIN pg_class rt ON rt.oid = con.confrelid
  JOIN pg_namespace rn ON rn.oid = rt.relnamespace
 WHERE con.contype = 'f'
   AND con.conparentid = 0
   AND n.nspname NOT IN ('pg_catalog', 'information_schema')
   AND n.nspname !~ '^pg_(toast|temp_|toast_temp_)'
   AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s::text)
   AND (%(table_oid)s::oid IS NULL OR con.conrelid = %(table_oid)s::oid)
 ORDER BY n.nspname, t.relname, con.conname

-- name: relation_names
-- Every name taken in a schema (indexes share the namespace with tables,
-- views and sequences), read once per schema that needs a new index name.
SELECT c.relname::text AS name
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = %(schema)s

-- name: last_index_scans
-- last_idx_scan exists from PostgreSQL 16; to_jsonb reads it where it exists
-- without a query per server version. Only asked for the few unused indexes.
SELECT s.indexrelid AS oid, to_jsonb(s) ->> 'last_idx_scan' AS last_idx_scan
  FROM pg_stat_all_indexes s
 WHERE s.indexrelid = ANY(%(oids)s::oid[])

-- name: own_schemas
-- Schemas that hold a pgsteady install (its migrations and jobs tables):
-- their indexes are deliberate designs, not tuning advice for the user.
SELECT n.nspname::text AS schema
  FROM pg_namespace n
 WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'migrations' AND c.relkind = 'r')
   AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'change_steps' AND c.relkind = 'r')
   AND EXISTS (SELECT 1 FROM pg_class c WHERE c.relnamespace = n.oid AND c.relname = 'jobs' AND c.relkind IN ('r', 'p'))

-- name: unattached_partitions
-- For a partitioned index, the partitions of its table that have no index
-- attached to it: each keeps the parent INVALID until one is built and attached.
SELECT p.oid,
       pn.nspname::text AS schema,
       p.relname::text AS name,
       quote_ident(pn.nspname) || '.' || quote_ident(p.relname) AS qualified,
       p.relkind::text AS relkind
  FROM pg_index pi
  JOIN pg_inherits h ON h.inhparent = pi.indrelid
  JOIN pg_class p ON p.oid = h.inhrelid
  JOIN pg_namespace pn ON pn.oid = p.relnamespace
 WHERE pi.indexrelid = %(index_oid)s
   AND NOT EXISTS (SELECT 1 FROM pg_inherits hi JOIN pg_index ci ON ci.indexrelid = hi.inhrelid
                    WHERE hi.inhparent = pi.indexrelid AND ci.indrelid = p.oid)
 ORDER BY p.relname

-- name: partitions
-- The partitions of a partitioned table, in name order.
SELECT p.oid,
       pn.nspname::text AS schema,
       p.relname::text AS name,
       quote_ident(pn.nspname) || '.' || quote_ident(p.relname) AS qualified,
       p.relkind::text AS relkind
  FROM pg_inherits h
  JOIN pg_class p ON p.oid = h.inhrelid
  JOIN pg_namespace pn ON pn.oid = p.relnamespace
 WHERE h.inhparent = %(table_oid)s
 ORDER BY p.relname
