-- How pgsteady's sessions are set up, whatever stands between them and the
-- server (pgsteady/topology.py).

-- name: backend_pid
-- Compared with the pid announced at connect: they differ behind a pooler.
SELECT pg_backend_pid();

-- name: apply_settings
-- Settings by name, for the session (local = false) or only for the current
-- transaction (local = true, what transaction pooling allows).
SELECT count(set_config(s.name, s.value, %(local)s))
FROM unnest(%(names)s::text[], %(values)s::text[]) AS s (name, value);
