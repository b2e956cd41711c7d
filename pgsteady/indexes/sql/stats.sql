-- Statistics reads for the index health checks: planner statistics
-- (pg_stats, which only shows columns the role may SELECT) and activity
-- counters (pg_stat_*), fetched in bulk for the rows the checks ask about.

-- name: column_stats
-- The wanted (schema, table, column) triples arrive as three parallel arrays;
-- for an expression column of an index, "table" is the index and "column" is
-- the index's attribute name. most_common_vals is only read where asked for
-- (boolean columns): for text columns it can be large.
SELECT s.schemaname::text AS schema,
       s.tablename::text AS table,
       s.attname::text AS column,
       s.null_frac::float8 AS null_frac,
       s.avg_width,
       CASE WHEN w.want_mcv THEN s.most_common_vals::text END AS most_common_vals,
       CASE WHEN w.want_mcv THEN s.most_common_freqs END AS most_common_freqs
  FROM unnest(%(schemas)s::text[], %(tables)s::text[], %(columns)s::text[], %(want_mcv)s::bool[])
       AS w(schema, tbl, col, want_mcv)
  JOIN pg_stats s ON s.schemaname = w.schema AND s.tablename = w.tbl AND s.attname = w.col

-- name: seq_scanned_tables
-- Tables big enough to matter that were scanned sequentially often enough;
-- the "mostly" comparison with index scans is made by the caller.
SELECT s.relid AS table_oid,
       quote_ident(s.schemaname) || '.' || quote_ident(s.relname) AS qualified,
       s.relname::text AS name,
       s.seq_scan,
       s.seq_tup_read,
       coalesce(s.idx_scan, 0) AS idx_scan,
       s.n_live_tup,
       pg_relation_size(s.relid) AS bytes,
       to_jsonb(s) ->> 'last_seq_scan' AS last_seq_scan
  FROM pg_stat_all_tables s
  JOIN pg_class c ON c.oid = s.relid
 WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')
   AND s.schemaname !~ '^pg_(toast|temp_|toast_temp_)'
   AND c.relkind IN ('r', 'm')
   AND (%(schema)s::text IS NULL OR s.schemaname = %(schema)s::text)
   AND (%(table_oid)s::oid IS NULL OR s.relid = %(table_oid)s::oid)
   AND s.seq_scan >= %(min_seq_scans)s
   AND pg_relation_size(s.relid) >= %(min_bytes)s
 ORDER BY s.seq_tup_read DESC

-- name: heaviest_statements
-- {pgss} is the extension's schema, filled in with sql.Identifier. The
-- caller matches table names in the text, so only the heaviest few hundred
-- statements of this database are read.
SELECT s.queryid, s.calls, s.total_exec_time, s.mean_exec_time, s.rows, s.query
  FROM {pgss}.pg_stat_statements s
 WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
 ORDER BY s.total_exec_time DESC
 LIMIT %(limit)s

-- name: index_scans
-- What --also reads from each replica: scans per index, by name, because
-- object ids are the same on a physical replica but not worth relying on.
SELECT s.schemaname::text AS schema, s.indexrelname::text AS name, s.idx_scan,
       (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()) AS stats_reset
  FROM pg_stat_all_indexes s
 WHERE s.schemaname NOT IN ('pg_catalog', 'information_schema')
   AND s.schemaname !~ '^pg_(toast|temp_|toast_temp_)'

-- name: pgstatindex
-- {pgst} is the extension's schema, filled in with sql.Identifier. Reads every
-- page of the index: only asked for indexes that have no statistics to estimate from.
SELECT leaf_pages, empty_pages, deleted_pages, avg_leaf_density
  FROM {pgst}.pgstatindex(%(oid)s::regclass)
