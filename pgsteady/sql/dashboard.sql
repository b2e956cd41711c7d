-- Index builds in progress, as the dashboard shows them.

-- name: dashboard_index_builds
-- Index builds in progress anywhere in this database (a system view, no table scan).
SELECT p.pid, c.relname AS table_name, i.relname AS index_name, p.phase, p.blocks_done, p.blocks_total,
       p.tuples_done, p.tuples_total, a.query_start
FROM pg_stat_progress_create_index p
LEFT JOIN pg_class c ON c.oid = p.relid
LEFT JOIN pg_class i ON i.oid = p.index_relid
LEFT JOIN pg_stat_activity a ON a.pid = p.pid
WHERE p.datname = current_database()
ORDER BY a.query_start NULLS LAST;
