"""Permissions: the role pgsteady runs as, the least-privilege roles, PUBLIC, pg_hba, SSL, passwords."""

from __future__ import annotations

from typing import Iterator

from .report import FAIL, PASS, SKIP, WARN, Result
from .roles import KINDS, ROLE_RULES, name_list, excess_powers, problems, role_names
from .snapshot import Database, Snapshot

AREA = "permissions"
TCP_TYPES = {"host", "hostssl", "hostnossl", "hostgssenc", "hostnogssenc"}
_WORST = {PASS: 0, WARN: 1, FAIL: 2}


def _worst(statuses) -> str:
    return max(statuses, key=_WORST.__getitem__, default=PASS)


def app_role(snap: Snapshot) -> Iterator[Result]:
    db = snap.database
    name = db.connection["role"]
    if db.role is None:
        yield Result("app_role", AREA, SKIP, name, f"cannot read the attributes of {name}: "
                     f"{db.unreadable.get('role_facts', 'no row in pg_roles')}")
        return
    found = excess_powers(db.role)
    if not db.role["superuser"]:  # a superuser's other powers follow from that one
        found += _schema_powers(db, snap.schema)
    if not found:
        yield Result("app_role", AREA, PASS, name,
                     f"{name} is an ordinary role: not a superuser, no CREATEROLE, no server file or program "
                     f"access, and it does not own the {snap.schema!r} schema",
                     evidence={"role": _powers(db.role)})
        return
    yield Result(
        "app_role", AREA, _worst(s for s, _ in found), name,
        f"the role pgsteady connects as, {name}, " + "; ".join(text for _, text in found),
        fix=(f"connect the App and the workers as a worker role without these powers and let a migrate role own "
             f"the schema: `pgsteady security roles` prints the SQL for both"),
        evidence={"role": _powers(db.role), "problems": [text for _, text in found]},
    )


def _schema_powers(db: Database, schema: str) -> list[tuple[str, str]]:
    """What the connection's role may do to pgsteady's objects beyond using them."""
    if db.role["owns_schema"]:
        return [(WARN, f"owns the {schema!r} schema: it can alter and drop every pgsteady table")]
    found = []
    if db.role["schema_create"]:
        found.append((WARN, f"may CREATE objects in the {schema!r} schema"))
    if db.role["database_create"]:
        found.append((WARN, "may CREATE schemas in the database"))
    owned = [row["table"] for row in db.tables if row["owner"]]
    if owned:
        found.append((WARN, f"owns {len(owned)} pgsteady tables ({name_list(owned)}): it can alter and drop them"))
    return found


def least_privilege_roles(snap: Snapshot) -> Iterator[Result]:
    db = snap.database
    names = role_names(snap.role_prefix)
    if "role_facts" in db.unreadable:
        yield Result("least_privilege_roles", AREA, SKIP, ", ".join(names.values()),
                     f"cannot read the roles: {db.unreadable['role_facts']}")
        return
    present = [k for k in KINDS if db.roles.get(k)]
    if not present:
        yield Result("least_privilege_roles", AREA, SKIP, ", ".join(names.values()),
                     "none of the least-privilege roles exist, so there is nothing to verify",
                     fix=f"`pgsteady security roles --prefix {snap.role_prefix}` prints the SQL that creates them")
        return
    for kind in KINDS:
        rule, facts = ROLE_RULES[kind], db.roles.get(kind)
        if facts is None:
            yield Result("least_privilege_roles", AREA, WARN, names[kind],
                         f"{names[kind]} ({rule.purpose}) does not exist, while the others do",
                         fix="run the SQL of `pgsteady security roles` again: it creates the missing role")
            continue
        found = problems(rule, facts, db.role_tables.get(kind, []))
        if not found:
            yield Result("least_privilege_roles", AREA, PASS, names[kind],
                         f"{names[kind]} {rule.purpose}, and can do nothing more in the schema",
                         evidence={"role": _powers(facts)})
        else:
            yield Result("least_privilege_roles", AREA, _worst(s for s, _ in found), names[kind],
                         f"{names[kind]} " + "; ".join(text for _, text in found),
                         fix="run the SQL of `pgsteady security roles` again: it resets the roles' attributes and grants",
                         evidence={"role": _powers(facts), "problems": [text for _, text in found]})


def public_privileges(snap: Snapshot) -> Iterator[Result]:
    if not any(row["kind"] == "schema" for row in snap.database.public):
        yield Result("public_privileges", AREA, SKIP, snap.schema,
                     f"the {snap.schema!r} schema does not exist in this database (pgsteady migrate creates it)")
        return
    granted = [row for row in snap.database.public if row["privileges"]]
    if not granted:
        yield Result("public_privileges", AREA, PASS, snap.schema,
                     f"PUBLIC has no privilege on the {snap.schema!r} schema or its tables")
        return
    status = WARN
    for row in granted:
        if row["kind"] in ("table", "view") or "CREATE" in row["privileges"]:
            status = FAIL
    groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for row in granted:
        groups.setdefault((row["kind"], tuple(row["privileges"])), []).append(row["name"])
    yield Result(
        "public_privileges", AREA, status, snap.schema,
        "every role of the server (PUBLIC) may " + "; ".join(
            f"{'/'.join(privileges)} on {len(names)} {kind}{'s' if len(names) > 1 else ''} ({name_list(names)})"
            for (kind, privileges), names in groups.items()),
        fix=(f"REVOKE ALL ON SCHEMA {snap.schema} FROM PUBLIC; REVOKE ALL ON ALL TABLES IN SCHEMA {snap.schema} "
             f"FROM PUBLIC; REVOKE ALL ON ALL SEQUENCES IN SCHEMA {snap.schema} FROM PUBLIC "
             "(the SQL of `pgsteady security roles` does this and grants what each role needs)"),
        evidence={"grants": [{"kind": r["kind"], "name": r["name"], "privileges": r["privileges"]} for r in granted]},
    )


def pg_hba(snap: Snapshot) -> Iterator[Result]:
    db = snap.database
    if db.hba is None:
        yield Result("pg_hba", AREA, SKIP, "pg_hba_file_rules",
                     f"cannot read pg_hba_file_rules ({db.unreadable.get('hba_rules', 'not readable')}); "
                     "a superuser or a role granted SELECT on it can")
        return
    weak = []
    for rule in db.hba:
        method = rule["auth_method"]
        if rule["type"] in TCP_TYPES and method in ("trust", "password", "md5"):
            status = WARN if method == "md5" else FAIL
            why = {"trust": "lets anyone who reaches the port in without a password",
                   "password": "sends the password in clear text",
                   "md5": "accepts MD5 hashes, which a stolen hash replays"}[method]
            weak.append((status, rule, why))
    if not weak:
        yield Result("pg_hba", AREA, PASS, "pg_hba_file_rules",
                     f"no TCP line uses trust, password or md5 ({len(db.hba)} lines read)")
        return
    for status, rule, why in weak:
        where = f"line {rule['line_number']}: {rule['type']} {','.join(rule['database'] or [])} " \
                f"{','.join(rule['user_name'] or [])} {rule['address'] or ''} {rule['auth_method']}"
        yield Result("pg_hba", AREA, status, f"pg_hba.conf line {rule['line_number']}",
                     f"{where.strip()} {why}",
                     fix="use scram-sha-256 (and hostssl) for TCP lines in pg_hba.conf, then SELECT pg_reload_conf()",
                     evidence={k: rule[k] for k in ("line_number", "type", "database", "user_name", "address",
                                                    "auth_method")})


def connection_ssl(snap: Snapshot) -> Iterator[Result]:
    db = snap.database
    if "ssl" in db.unreadable:
        yield Result("ssl", AREA, SKIP, db.name, f"cannot read pg_stat_ssl: {db.unreadable['ssl']}")
        return
    on = bool(db.ssl and db.ssl["ssl"])
    evidence = {"ssl": on, "version": db.ssl and db.ssl["version"], "via": db.via,
                "server_ssl": db.settings.get("ssl")}
    if on:
        yield Result("ssl", AREA, PASS, db.name, f"the connection is encrypted ({db.ssl['version']})", evidence=evidence)
    elif db.via == "socket":
        yield Result("ssl", AREA, PASS, db.name, "the connection is a local socket: it never leaves this machine",
                     evidence=evidence)
    else:
        yield Result("ssl", AREA, WARN if db.via == "loopback" else FAIL, db.name,
                     f"the connection to {db.host} is not encrypted"
                     + (" (loopback: it stays on this machine)" if db.via == "loopback" else
                        ": passwords and job arguments cross the network in clear text"),
                     fix="turn ssl on in the server and connect with sslmode=verify-full (or require) in the DSN",
                     evidence=evidence)


def password_encryption(snap: Snapshot) -> Iterator[Result]:
    db = snap.database
    value = db.settings.get("password_encryption")
    if value is None:
        yield Result("password_encryption", AREA, SKIP, "password_encryption", "cannot read the setting")
        return
    evidence = {"password_encryption": value, "roles_with_md5_passwords": db.md5_roles}
    if value != "scram-sha-256":
        yield Result("password_encryption", AREA, FAIL, "password_encryption",
                     f"password_encryption is {value}: new passwords are stored as MD5 hashes",
                     fix="ALTER SYSTEM SET password_encryption = 'scram-sha-256'; SELECT pg_reload_conf(); "
                         "then set each password again", evidence=evidence)
    elif db.md5_roles:
        yield Result("password_encryption", AREA, WARN, "password_encryption",
                     f"new passwords are stored as SCRAM, but {db.md5_roles} roles still have MD5 passwords",
                     fix="set those roles' passwords again (\\password in psql)", evidence=evidence)
    else:
        yield Result("password_encryption", AREA, PASS, "password_encryption",
                     "passwords are stored as SCRAM-SHA-256"
                     + ("" if db.md5_roles is not None else " (stored hashes not readable by this role)"),
                     evidence=evidence)


def _powers(facts: dict) -> dict:
    keys = ("superuser", "createrole", "createdb", "bypassrls", "replication", "dangerous_memberships",
            "database_create", "owns_schema", "schema_usage", "schema_create")
    return {k: facts[k] for k in keys}
