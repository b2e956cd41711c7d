"""Migration rules, family 1: adding columns and constraints (registered in ``migration_rules.RULES``)."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType as AT, ConstrType as CT

from .migration_rules import SERIAL, added_constraints, cmds, constraints, existing, function_calls, rule, sql_of, \
    table_of, type_name

# -- adding a column ------------------------------------------------------------------

ROUTE_BACKFILL = ("ALTER TABLE t ADD COLUMN c uuid;  -- no default: instant\n"
                  "ALTER TABLE t ALTER COLUMN c SET DEFAULT gen_random_uuid();  -- new rows only\n"
                  "UPDATE t SET c = gen_random_uuid() WHERE id BETWEEN 1 AND 10000 AND c IS NULL;  -- in batches")


@rule("add-column-volatile-default", "refuse",
      "a volatile DEFAULT (random(), gen_random_uuid(), clock_timestamp()) is computed per row: the whole table "
      "is rewritten under ACCESS EXCLUSIVE, blocking reads and writes",
      "add the column without a default, set the default for new rows, then backfill existing rows in "
      "batches:\n" + ROUTE_BACKFILL,
      "squawk adding-field-with-default; strong_migrations add_column_default_callable / volatile default",
      size_matters=True)
def _volatile_default(st, walk):
    if not existing(st, walk):
        return
    for cmd in cmds(st.node, AT.AT_AddColumn):
        for default in constraints(cmd.def_, CT.CONSTR_DEFAULT):
            volatile = walk.volatile(function_calls(default.raw_expr))
            if volatile:
                yield (f"column {cmd.def_.colname} DEFAULT {sql_of(default.raw_expr)} calls {', '.join(volatile)} "
                       f"(volatile): {table_of(st.node)} is rewritten")


@rule("add-column-default-unknown", "note",
      "the default calls a function lint could not look up: if it is volatile, the table is rewritten",
      "lint with a database (it reads pg_proc.provolatile), or rehearse: the rehearsal measures whether the "
      "table was rewritten")
def _unknown_default(st, walk):
    if not existing(st, walk):
        return
    for cmd in cmds(st.node, AT.AT_AddColumn):
        for default in constraints(cmd.def_, CT.CONSTR_DEFAULT):
            unknown = walk.unknown_functions(function_calls(default.raw_expr))
            if unknown:
                yield f"column {cmd.def_.colname} DEFAULT calls {', '.join(unknown)}"


@rule("add-column-auto-increment", "refuse",
      "a serial or identity column added to an existing table fills every row: the table is rewritten under "
      "ACCESS EXCLUSIVE",
      "add a plain nullable bigint column, a sequence, and the default for new rows; backfill old rows in "
      "batches:\nCREATE SEQUENCE t_n_seq;\nALTER TABLE t ADD COLUMN n bigint;\n"
      "ALTER TABLE t ALTER COLUMN n SET DEFAULT nextval('t_n_seq');\n"
      "UPDATE t SET n = nextval('t_n_seq') WHERE id BETWEEN 1 AND 10000 AND n IS NULL;  -- in batches",
      "squawk adding-serial-primary-key-field; strong_migrations adding an auto-incrementing column",
      size_matters=True)
def _auto_increment(st, walk):
    if not existing(st, walk):
        return
    for cmd in cmds(st.node, AT.AT_AddColumn):
        col = cmd.def_
        if type_name(col.typeName) in SERIAL or constraints(col, CT.CONSTR_IDENTITY):
            yield f"column {col.colname} ({type_name(col.typeName)}{' identity' if col.constraints else ''})"


@rule("add-column-stored-generated", "refuse",
      "a STORED generated column is computed for every row when added: the table is rewritten under "
      "ACCESS EXCLUSIVE",
      "add a plain column, keep it filled with a trigger for new writes, and backfill old rows in batches",
      "strong_migrations adding a stored generated column", size_matters=True)
def _stored_generated(st, walk):
    if not existing(st, walk):
        return
    for cmd in cmds(st.node, AT.AT_AddColumn):
        if constraints(cmd.def_, CT.CONSTR_GENERATED):
            yield f"column {cmd.def_.colname} GENERATED ALWAYS AS (...) STORED"


@rule("add-required-column", "refuse",
      "ADD COLUMN ... NOT NULL without a DEFAULT fails on any table with rows, and old code that does not "
      "know the column can no longer insert",
      "add it nullable, or with a constant default (no rewrite since PostgreSQL 11):\n"
      "ALTER TABLE t ADD COLUMN c boolean NOT NULL DEFAULT false;",
      "squawk adding-required-field")
def _required(st, walk):
    if not existing(st, walk):
        return
    for cmd in cmds(st.node, AT.AT_AddColumn):
        col = cmd.def_
        auto = type_name(col.typeName) in SERIAL or constraints(col, CT.CONSTR_IDENTITY, CT.CONSTR_GENERATED)
        if (col.is_not_null or constraints(col, CT.CONSTR_NOTNULL, CT.CONSTR_PRIMARY)) \
                and not constraints(col, CT.CONSTR_DEFAULT) and not auto:
            yield f"column {col.colname} is NOT NULL with no default"


@rule("add-column-foreign-key", "refuse",
      "ADD COLUMN ... REFERENCES validates the new key at once, holding SHARE ROW EXCLUSIVE on both tables; "
      "an inline reference cannot be NOT VALID",
      "add the column, then the constraint NOT VALID, then validate it:\n"
      "ALTER TABLE t ADD COLUMN author_id bigint;\n"
      "ALTER TABLE t ADD CONSTRAINT t_author_fk FOREIGN KEY (author_id) REFERENCES authors (id) NOT VALID;\n"
      "ALTER TABLE t VALIDATE CONSTRAINT t_author_fk;",
      "squawk adding-foreign-key-constraint; strong_migrations adding a reference / foreign key")
def _inline_fk(st, walk):
    if not existing(st, walk):
        return
    for cmd in cmds(st.node, AT.AT_AddColumn):
        for fk in constraints(cmd.def_, CT.CONSTR_FOREIGN):
            yield f"column {cmd.def_.colname} REFERENCES {fk.pktable.relname}"


def _inline(node, kind):
    """ADD COLUMN definitions that carry a constraint of ``kind`` inline."""
    return [cmd.def_ for cmd in cmds(node, AT.AT_AddColumn) if constraints(cmd.def_, kind)]


# -- constraints ---------------------------------------------------------------------------------------


@rule("constraint-not-valid", "refuse",
      "ADD CONSTRAINT ... CHECK scans every row under ACCESS EXCLUSIVE: reads and writes wait for the scan",
      "add it NOT VALID (instant: only new rows are checked), then validate it under SHARE UPDATE "
      "EXCLUSIVE, which lets reads and writes go on:\n"
      "ALTER TABLE t ADD CONSTRAINT t_price_positive CHECK (price > 0) NOT VALID;\n"
      "ALTER TABLE t VALIDATE CONSTRAINT t_price_positive;",
      "squawk constraint-missing-not-valid; strong_migrations adding a check constraint", size_matters=True)
def _check_not_valid(st, walk):
    if not existing(st, walk):
        return
    for con in added_constraints(st.node, CT.CONSTR_CHECK):
        if not con.skip_validation:
            yield f"CHECK ({sql_of(con.raw_expr)}) on {table_of(st.node)} without NOT VALID"
    for col in _inline(st.node, CT.CONSTR_CHECK):
        yield f"ADD COLUMN {col.colname} ... CHECK: every row is checked; add the column, then the CHECK NOT VALID"


@rule("foreign-key-not-valid", "refuse",
      "ADD FOREIGN KEY validates every row at once, holding SHARE ROW EXCLUSIVE on both tables: writes to "
      "both wait",
      "add it NOT VALID, then validate it (SHARE UPDATE EXCLUSIVE on the table, ROW SHARE on the other):\n"
      "ALTER TABLE t ADD CONSTRAINT t_author_fk FOREIGN KEY (author_id) REFERENCES authors (id) NOT VALID;\n"
      "ALTER TABLE t VALIDATE CONSTRAINT t_author_fk;",
      "squawk adding-foreign-key-constraint, constraint-missing-not-valid; strong_migrations adding a foreign key")
def _fk_not_valid(st, walk):
    if not existing(st, walk):
        return
    for con in added_constraints(st.node, CT.CONSTR_FOREIGN):
        if not con.skip_validation:
            yield f"FOREIGN KEY to {con.pktable.relname} without NOT VALID"


_USING_INDEX = ("CREATE UNIQUE INDEX CONCURRENTLY t_slug_key ON t (slug);  -- no lock on writes\n"
                "ALTER TABLE t ADD CONSTRAINT t_slug_key {kind} USING INDEX t_slug_key;  -- instant")


@rule("unique-constraint-builds-index", "refuse",
      "ADD CONSTRAINT ... UNIQUE builds its index under ACCESS EXCLUSIVE: reads and writes wait for the "
      "whole build",
      "build the unique index concurrently, then attach it as the constraint:\n"
      + _USING_INDEX.format(kind="UNIQUE"),
      "squawk disallowed-unique-constraint; strong_migrations adding a unique constraint", size_matters=True)
def _unique(st, walk):
    if not existing(st, walk):
        return
    for con in added_constraints(st.node, CT.CONSTR_UNIQUE):
        if not con.indexname:
            yield f"UNIQUE ({', '.join(k.sval for k in con.keys)}) on {table_of(st.node)}"
    for col in _inline(st.node, CT.CONSTR_UNIQUE):
        yield f"ADD COLUMN {col.colname} ... UNIQUE on {table_of(st.node)}"


@rule("primary-key-builds-index", "refuse",
      "ADD PRIMARY KEY builds its index (and checks NOT NULL) under ACCESS EXCLUSIVE: reads and writes wait",
      "make the columns NOT NULL the safe way (see set-not-null), build the unique index concurrently, then "
      "attach it:\n" + _USING_INDEX.format(kind="PRIMARY KEY").replace("slug", "id"),
      "squawk adding-serial-primary-key-field (adding-primary-key-constraint)", size_matters=True)
def _primary_key(st, walk):
    if not existing(st, walk):
        return
    for con in added_constraints(st.node, CT.CONSTR_PRIMARY):
        if not con.indexname:
            yield f"PRIMARY KEY ({', '.join(k.sval for k in con.keys)}) on {table_of(st.node)}"
    for col in _inline(st.node, CT.CONSTR_PRIMARY):
        yield f"ADD COLUMN {col.colname} ... PRIMARY KEY on {table_of(st.node)}"


@rule("exclusion-constraint", "refuse",
      "an exclusion constraint builds its index and checks every row under ACCESS EXCLUSIVE, and cannot be "
      "added NOT VALID",
      "create a new table with the constraint, copy the rows over in batches and switch (the rename-table "
      "route), or add it in a maintenance window",
      "strong_migrations adding an exclusion constraint", size_matters=True)
def _exclusion(st, walk):
    if not existing(st, walk):
        return
    for _ in added_constraints(st.node, CT.CONSTR_EXCLUSION):
        yield f"EXCLUDE constraint on {table_of(st.node)}"


@rule("set-not-null", "refuse",
      "SET NOT NULL scans every row under ACCESS EXCLUSIVE, unless a validated CHECK (col IS NOT NULL) "
      "already proves it",
      "prove it with a check first; SET NOT NULL then skips the scan (PostgreSQL 12+):\n"
      "ALTER TABLE t ADD CONSTRAINT t_c_not_null CHECK (c IS NOT NULL) NOT VALID;\n"
      "ALTER TABLE t VALIDATE CONSTRAINT t_c_not_null;  -- SHARE UPDATE EXCLUSIVE: writes go on\n"
      "ALTER TABLE t ALTER COLUMN c SET NOT NULL;  -- instant\n"
      "ALTER TABLE t DROP CONSTRAINT t_c_not_null;",
      "squawk adding-not-nullable-field; strong_migrations setting NOT NULL on an existing column",
      size_matters=True)
def _set_not_null(st, walk):
    if not existing(st, walk):
        return
    for cmd in cmds(st.node, AT.AT_SetNotNull):
        if not walk.proven_not_null(table_of(st.node), cmd.name):
            yield f"{table_of(st.node)}.{cmd.name}: no validated CHECK ({cmd.name} IS NOT NULL) before it"


@rule("drop-not-null", "note",
      "code that relies on the column never being NULL (reports, other services, PL/pgSQL) may break",
      "check every reader first; to stop requiring a value without surprising readers, write a marker value "
      "instead of NULL", "squawk ban-drop-not-null")
def _drop_not_null(st, walk):
    for cmd in cmds(st.node, AT.AT_DropNotNull):
        yield f"{table_of(st.node)}.{cmd.name}"


@rule("domain-constraint", "refuse",
      "ALTER DOMAIN ... ADD CONSTRAINT checks every column of that domain in every table at once",
      "add it NOT VALID, then validate:\nALTER DOMAIN d ADD CONSTRAINT d_check CHECK (VALUE > 0) NOT VALID;\n"
      "ALTER DOMAIN d VALIDATE CONSTRAINT d_check;",
      "squawk ban-alter-domain-with-add-constraint")
def _alter_domain(st, walk):
    if isinstance(st.node, ast.AlterDomainStmt) and st.node.subtype == "C" and \
            not getattr(st.node.def_, "skip_validation", False):
        yield f"domain {'.'.join(n.sval for n in st.node.typeName)}"


@rule("domain-with-check", "note",
      "a domain with a CHECK makes every later change of that check revalidate every column using the domain",
      "put the CHECK on the columns themselves", "squawk ban-create-domain-with-constraint")
def _create_domain(st, walk):
    if isinstance(st.node, ast.CreateDomainStmt) and any(
            c.contype == CT.CONSTR_CHECK for c in st.node.constraints or ()):
        yield f"domain {'.'.join(n.sval for n in st.node.domainname)}"
