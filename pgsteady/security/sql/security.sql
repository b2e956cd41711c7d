-- The catalogue reads of `pgsteady security check`, each run once per check
-- (pgsteady/security/snapshot.py). Parameters are bound by name; {schema} is
-- the quoted schema name (psycopg.sql.Identifier).

-- name: connection
SELECT current_user AS role, session_user AS session_role, current_database() AS database,
       current_setting('server_version') AS server_version,
       current_setting('server_version_num')::int AS server_version_num

-- name: role_facts
-- One row per role asked for (missing roles give no row): its attributes, the
-- predefined roles of server-side file and program access it is a member of,
-- and what it may do in the schema.
SELECT r.rolname AS name, r.rolsuper AS superuser, r.rolcreaterole AS createrole,
       r.rolcreatedb AS createdb, r.rolbypassrls AS bypassrls, r.rolreplication AS replication,
       r.rolcanlogin AS can_login,
       ARRAY(SELECT d.rolname::text FROM pg_roles d
             WHERE d.rolname = ANY(%(dangerous)s::text[]) AND pg_has_role(r.oid, d.oid, 'MEMBER')
             ORDER BY 1) AS dangerous_memberships,
       has_database_privilege(r.oid, current_database(), 'CREATE') AS database_create,
       n.oid IS NOT NULL AS schema_exists,
       coalesce(n.nspowner = r.oid, false) AS owns_schema,
       coalesce(has_schema_privilege(r.oid, n.oid, 'USAGE'), false) AS schema_usage,
       coalesce(has_schema_privilege(r.oid, n.oid, 'CREATE'), false) AS schema_create
FROM pg_roles r
LEFT JOIN pg_namespace n ON n.nspname = %(schema)s
WHERE r.rolname = ANY(%(roles)s::text[])

-- name: table_privileges
-- What each role may do with each table and view of the schema (partitions
-- are reached through their parent, so they are left out).
SELECT r.rolname AS role, c.relname AS "table", c.relowner = r.oid AS owner,
       has_table_privilege(r.oid, c.oid, 'SELECT') AS "select",
       has_table_privilege(r.oid, c.oid, 'INSERT') AS "insert",
       has_table_privilege(r.oid, c.oid, 'UPDATE') AS "update",
       has_table_privilege(r.oid, c.oid, 'DELETE') AS "delete",
       has_table_privilege(r.oid, c.oid, 'TRUNCATE') AS "truncate"
FROM pg_roles r
CROSS JOIN pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = %(schema)s
WHERE r.rolname = ANY(%(roles)s::text[]) AND c.relkind IN ('r', 'p', 'v', 'm') AND NOT c.relispartition
ORDER BY 1, 2

-- name: public_privileges
-- Privileges granted to PUBLIC (grantee 0) on the schema itself and on its
-- tables, views and sequences.
SELECT 'schema' AS kind, n.nspname AS name,
       ARRAY(SELECT a.privilege_type FROM aclexplode(n.nspacl) a WHERE a.grantee = 0 ORDER BY 1) AS privileges
FROM pg_namespace n WHERE n.nspname = %(schema)s
UNION ALL
SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' ELSE 'table' END, c.relname,
       ARRAY(SELECT a.privilege_type FROM aclexplode(c.relacl) a WHERE a.grantee = 0 ORDER BY 1)
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace AND n.nspname = %(schema)s
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S') AND NOT c.relispartition

-- name: hba_rules
SELECT line_number, type, database, user_name, address, netmask, auth_method, error
FROM pg_hba_file_rules ORDER BY line_number

-- name: ssl
SELECT ssl, version, cipher FROM pg_stat_ssl WHERE pid = pg_backend_pid()

-- name: settings
SELECT name, setting, unit FROM pg_settings WHERE name = ANY(%(names)s::text[])

-- name: md5_passwords
-- Readable by a superuser only: roles whose stored password is an MD5 hash.
SELECT count(*) AS roles FROM pg_authid WHERE left(rolpassword, 3) = 'md5'

-- name: recent_job_keys
-- The keys (at any depth) of the newest jobs' arguments, never their values;
-- the primary key bounds the read to the sample.
SELECT j.task, ARRAY(SELECT DISTINCT k FROM jsonb_path_query(
           j.args, 'strict $.** ? (@.type() == "object").keyvalue().key') AS k) AS keys
FROM (SELECT id, task, args FROM {schema}.jobs ORDER BY id DESC LIMIT %(sample)s) AS j

-- name: recent_event_keys
-- The keys of recent events' data. Partition pruning keeps the read to the
-- last days and the LIMIT stops it after the sample.
SELECT e.kind, ARRAY(SELECT DISTINCT k FROM jsonb_path_query(
           e.data, 'strict $.** ? (@.type() == "object").keyvalue().key') AS k) AS keys
FROM (SELECT kind, data FROM {schema}.events
      WHERE created_at >= now() - %(since)s::interval AND data IS NOT NULL
      LIMIT %(sample)s) AS e
