"""Three least-privilege roles for one pgsteady schema, and what each may do.

    migrate   owns the schema and everything in it: runs `pgsteady migrate`
              (and the event-partition duty, which creates and drops tables)
    worker    uses the schema; reads and writes the rows of every table:
              the App's enqueue and the workers' claim, complete and retry
    readonly  uses the schema; reads every table: `pgsteady status`, the
              dashboard, monitoring

``grant_sql()`` prints the SQL that creates them (``pgsteady security
roles``); ``ROLE_RULES`` is what ``pgsteady security check`` verifies about
them when they exist. Both come from this one module, so the script and the
check cannot disagree. Role names are ``<prefix>_migrate`` and so on, the
prefix defaulting to the schema name; every identifier goes through
``psycopg.sql``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from psycopg import sql

from ..errors import ConfigError
from ..queries import validate_schema

KINDS = ("migrate", "worker", "readonly")

# Membership in these predefined roles lets a role read, write or run
# anything on the server as its OS user.
DANGEROUS_ROLES = ("pg_execute_server_program", "pg_read_server_files", "pg_write_server_files")

_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,53}$")  # + "_readonly" stays within 63 bytes


@dataclass(frozen=True)
class RoleRule:
    """What a role of one kind must and must not be able to do in the schema."""

    kind: str
    owns_schema: bool             # must own it (migrate) or must not (the others)
    schema_create: bool           # may create objects in the schema
    table_privileges: frozenset   # needed on every table; anything beyond them is a finding
    purpose: str


ROLE_RULES: dict[str, RoleRule] = {
    "migrate": RoleRule("migrate", True, True, frozenset({"select", "insert", "update", "delete", "truncate"}),
                        "owns the schema; runs pgsteady migrate and the event-partition duty"),
    "worker": RoleRule("worker", False, False, frozenset({"select", "insert", "update", "delete"}),
                       "enqueues, claims, completes and retries jobs"),
    "readonly": RoleRule("readonly", False, False, frozenset({"select"}),
                         "reads status and the dashboard"),
}
TABLE_PRIVILEGES = ("select", "insert", "update", "delete", "truncate")


def validate_prefix(prefix: str) -> str:
    if not _PREFIX.match(prefix or ""):
        raise ConfigError(
            f"role prefix {prefix!r} is not allowed; use lower-case letters, digits and _ "
            "(starting with a letter or _), at most 54 characters"
        )
    return prefix


def role_names(prefix: str) -> dict[str, str]:
    """{kind: role name} for a prefix: pgsteady_migrate, pgsteady_worker, pgsteady_readonly."""
    validate_prefix(prefix)
    return {kind: f"{prefix}_{kind}" for kind in KINDS}


def grant_sql(schema: str, prefix: str | None = None) -> str:
    """The SQL script that creates (or repairs) the three roles for ``schema``.

    Safe to run again: roles are created when missing and their attributes
    reset, ownership and grants are re-applied. Run it as a superuser in the
    database pgsteady uses, then give each role a password.
    """
    validate_schema(schema)
    names = role_names(prefix or schema)
    s = sql.Identifier(schema)
    m, w, r = (sql.Identifier(names[k]) for k in KINDS)
    everyone = sql.SQL(", ").join([m, w, r])
    lines: list[sql.Composable] = [
        sql.SQL("-- Least-privilege roles for the pgsteady schema {} (pgsteady security roles).").format(s),
        sql.SQL("-- Run as a superuser in the database pgsteady uses; safe to run again."),
        sql.SQL("-- Then set each password with \\password in psql (stored as SCRAM when"),
        sql.SQL("-- password_encryption = scram-sha-256) and use:"),
        sql.SQL("--   {}  for pgsteady migrate, and for one maintenance worker: the event-partition").format(m),
        sql.SQL("--        duty creates and drops tables; or run pgsteady migrate daily, which creates them ahead"),
        sql.SQL("--   {}  for the App and the workers").format(w),
        sql.SQL("--   {}  for pgsteady status and the dashboard").format(r),
        sql.SQL("BEGIN;"),
    ]
    for ident in (m, w, r):
        lines += [
            sql.SQL("DO $$ BEGIN CREATE ROLE {}; EXCEPTION WHEN duplicate_object THEN NULL; END $$;").format(ident),
            sql.SQL("ALTER ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;").format(ident),
        ]
    lines.append(sql.SQL(
        "DO $$ DECLARE ddl text; BEGIN FOR ddl IN SELECT format('REVOKE %I FROM %I', g.rolname, m.rolname)"
        " FROM pg_auth_members a JOIN pg_roles g ON g.oid = a.roleid JOIN pg_roles m ON m.oid = a.member"
        " WHERE g.rolname = ANY({dangerous}) AND m.rolname = ANY({roles}) LOOP EXECUTE ddl; END LOOP; END $$;"
    ).format(dangerous=sql.Literal(list(DANGEROUS_ROLES)), roles=sql.Literal([names[k] for k in KINDS])))
    lines += [
        sql.SQL("DO $$ BEGIN EXECUTE format('GRANT CONNECT ON DATABASE %I TO {}', current_database()); END $$;")
        .format(everyone),
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {};").format(s, m),
        sql.SQL("ALTER SCHEMA {} OWNER TO {};").format(s, m),
        sql.SQL("-- What an earlier install created moves to the migrate role. Sequences of identity"),
        sql.SQL("-- and serial columns follow their table."),
        sql.SQL(
            "DO $$ DECLARE ddl text; BEGIN FOR ddl IN"
            " SELECT format('ALTER %s %s OWNER TO %I', CASE c.relkind WHEN 'S' THEN 'SEQUENCE' WHEN 'v' THEN 'VIEW'"
            " WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE 'TABLE' END, c.oid::regclass, {role})"
            " FROM pg_class c WHERE c.relnamespace = {schema}::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'S')"
            " AND NOT (c.relkind = 'S' AND EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass"
            " AND d.objid = c.oid AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')))"
            " UNION ALL SELECT format('ALTER ROUTINE %s OWNER TO %I', p.oid::regprocedure, {role})"
            " FROM pg_proc p WHERE p.pronamespace = {schema}::regnamespace"
            " UNION ALL SELECT format('ALTER TYPE %s OWNER TO %I', t.oid::regtype, {role})"
            " FROM pg_type t WHERE t.typnamespace = {schema}::regnamespace AND t.typtype IN ('e', 'd')"
            " LOOP EXECUTE ddl; END LOOP; END $$;"
        ).format(role=sql.Literal(names["migrate"]), schema=sql.Literal(schema)),
        sql.SQL("REVOKE ALL ON SCHEMA {} FROM PUBLIC;").format(s),
        sql.SQL("REVOKE ALL ON ALL TABLES IN SCHEMA {} FROM PUBLIC;").format(s),
        sql.SQL("REVOKE ALL ON ALL SEQUENCES IN SCHEMA {} FROM PUBLIC;").format(s),
        sql.SQL("REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {} FROM PUBLIC;").format(s),
        sql.SQL("GRANT USAGE ON SCHEMA {} TO {}, {};").format(s, w, r),
        sql.SQL("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {} TO {};").format(s, w),
        sql.SQL("GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {} TO {};").format(s, w),
        sql.SQL("GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {} TO {};").format(s, w),
        sql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {};").format(s, r),
        sql.SQL("-- Tables, sequences and functions that later migrations and partitions create."),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;").format(m),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {};")
        .format(m, s, w),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT USAGE, SELECT ON SEQUENCES TO {};")
        .format(m, s, w),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT EXECUTE ON FUNCTIONS TO {};").format(m, s, w),
        sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT SELECT ON TABLES TO {};").format(m, s, r),
        sql.SQL("COMMIT;"),
    ]
    return "\n".join(line.as_string() for line in lines) + "\n"


def problems(rule: RoleRule, facts: dict, tables: list[dict]) -> list[tuple[str, str]]:
    """(status, what is wrong) for one role against its rule; empty when it matches.

    ``facts`` is a row of the role_facts query, ``tables`` its rows of
    table_privileges.
    """
    found = [(status, text) for status, text in excess_powers(facts)]
    if not facts["schema_exists"]:
        return found
    if rule.owns_schema and not facts["owns_schema"]:
        found.append(("fail", "does not own the schema, so pgsteady migrate cannot change it"))
    if not rule.owns_schema and facts["owns_schema"]:
        found.append(("fail", "owns the schema: it can alter and drop every pgsteady table"))
    if not facts["schema_usage"]:
        found.append(("fail", "has no USAGE on the schema"))
    if facts["schema_create"] and not rule.schema_create:
        found.append(("fail", "may CREATE objects in the schema"))
    if facts["database_create"] and not rule.schema_create:
        found.append(("fail", "may CREATE schemas in the database"))
    missing: dict[str, list[str]] = {}
    extra: dict[str, list[str]] = {}
    for row in tables:
        have = {p for p in TABLE_PRIVILEGES if row[p]}
        for p in sorted(rule.table_privileges - have):
            missing.setdefault(p.upper(), []).append(row["table"])
        if not rule.owns_schema:
            for p in sorted(have - rule.table_privileges):
                extra.setdefault(p.upper(), []).append(row["table"])
            if row["owner"]:
                extra.setdefault("OWNER", []).append(row["table"])
    for p, names in missing.items():
        found.append(("fail", f"lacks {p} on {name_list(names)}"))
    for p, names in extra.items():
        found.append(("fail", f"has {p} on {name_list(names)}, beyond what it needs"))
    return found


def excess_powers(facts: dict) -> list[tuple[str, str]]:
    """Powers beyond any pgsteady role's needs: (status, what)."""
    out = []
    if facts["superuser"]:
        # Every other power follows from this one; naming them would bury it.
        return [("fail", "is a superuser: a task or a bad query can COPY ... TO PROGRAM and run anything")]
    if facts["createrole"]:
        out.append(("fail", "has CREATEROLE: it can grant itself the predefined roles that read and write server files"))
    for d in facts["dangerous_memberships"]:
        out.append(("fail", f"is a member of {d}"))
    if facts["bypassrls"]:
        out.append(("warn", "has BYPASSRLS: row-level security policies do not apply to it"))
    if facts["createdb"]:
        out.append(("warn", "has CREATEDB"))
    if facts["replication"]:
        out.append(("warn", "has REPLICATION: it can stream every table of the cluster"))
    return out


def name_list(names: list[str], most: int = 5) -> str:
    shown = ", ".join(names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")
