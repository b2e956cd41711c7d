"""Migration rules, family 2: changing, renaming and dropping what exists (registered in ``migration_rules.RULES``)."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType as AT, DropBehavior, ObjectType

from .migration_rules import cmds, existing, rule, table_of, type_name, typmods
from .statements import quote

EXPAND_CONTRACT = ("expand and contract, one deploy apart: add the new {what}, write to both (a trigger or the "
                   "code), backfill in batches, move reads to the new one, stop writing the old one, then drop it")

# (old type, new type) pairs that PostgreSQL changes without rewriting the table
# (binary coercible, or a wider typmod of the same type; checked further below).
_NO_REWRITE = {("varchar", "text"), ("text", "varchar"), ("cidr", "inet"), ("varchar", "varchar"),
               ("numeric", "numeric"), ("timestamp", "timestamp"), ("timestamptz", "timestamptz"),
               ("time", "time"), ("timetz", "timetz"), ("interval", "interval"), ("bit", "varbit"),
               ("varbit", "varbit"), ("bpchar", "text"), ("bpchar", "varchar")}


def _widens(old: str, old_mod: int, new: str, new_mods: list[int]) -> bool:
    """Does ALTER COLUMN TYPE from (old, atttypmod) to (new, typmods) keep the rows as they are?"""
    if (old, new) not in _NO_REWRITE:
        return False
    if not new_mods:  # unconstrained: text, varchar, numeric, timestamp without a precision
        return True
    if old_mod < 0:  # an unconstrained column narrowed: every row is checked (and may fail)
        return False
    if new in ("varchar", "varbit"):
        return new_mods[0] >= (old_mod - 4 if new == "varchar" else old_mod)
    if new == "numeric":
        precision, scale = ((old_mod - 4) >> 16) & 0xFFFF, (old_mod - 4) & 0xFFFF
        return new_mods[0] >= precision and (new_mods[1] if len(new_mods) > 1 else 0) == scale
    return new_mods[0] >= old_mod  # time, timestamp, interval precision


def _type_changes(st, walk):
    """(verdict, message) per ALTER COLUMN TYPE: rewrite, unknown (no catalogue to tell) or none."""
    if not existing(st, walk):
        return
    table = table_of(st.node)
    for cmd in cmds(st.node, AT.AT_AlterColumnType):
        new, mods = type_name(cmd.def_.typeName), typmods(cmd.def_.typeName)
        shown = new + (f"({','.join(map(str, mods))})" if mods else "")
        if cmd.def_.raw_default is not None:
            yield "rewrite", f"{table}.{cmd.name} TYPE {shown} USING ...: a USING expression rewrites every row"
            continue
        old = walk.column_type(table, cmd.name)
        if old is None and new in ("text", "varchar") and not mods:
            yield "unknown", f"{table}.{cmd.name} TYPE {shown}: no rewrite only if it is varchar or text today"
        elif old is None:
            yield "rewrite", f"{table}.{cmd.name} TYPE {shown}: the table is rewritten (unless the old type is " \
                             "binary compatible: lint with a database to know)"
        elif not _widens(old[0], old[1], new, mods):
            yield "rewrite", f"{table}.{cmd.name} from {old[2]} to {shown}: the table is rewritten"
        elif walk.column_checks(table, cmd.name):
            yield "rewrite", f"{table}.{cmd.name} from {old[2]} to {shown}: no rewrite, but its CHECK " \
                             "constraints are checked again on every row under ACCESS EXCLUSIVE"


@rule("column-type-change", "refuse",
      "ALTER COLUMN ... TYPE rewrites the table and rebuilds its indexes under ACCESS EXCLUSIVE, unless the new "
      "type is binary compatible (varchar to text, a longer varchar, a wider numeric)",
      EXPAND_CONTRACT.format(what="column") + ":\nALTER TABLE t ADD COLUMN n_new bigint;\n"
      "-- trigger: NEW.n_new := NEW.n; backfill: UPDATE t SET n_new = n WHERE id BETWEEN ... ;\n"
      "-- later: ALTER TABLE t DROP COLUMN n; ALTER TABLE t RENAME COLUMN n_new TO n;",
      "squawk changing-column-type; strong_migrations changing the type of a column (and change_column_constraint)",
      size_matters=True)
def _type_change(st, walk):
    yield from (message for verdict, message in _type_changes(st, walk) if verdict == "rewrite")


@rule("column-type-unverified", "note",
      "without a database lint cannot tell the column's current type, so whether the change rewrites",
      "lint with a database (it reads the current type), or rehearse: the rehearsal measures the rewrite",
      "strong_migrations changing the type of a column (safe changes)")
def _type_unverified(st, walk):
    yield from (message for verdict, message in _type_changes(st, walk) if verdict == "unknown")


@rule("table-rewrite", "refuse",
      "SET TABLESPACE, SET LOGGED/UNLOGGED, SET ACCESS METHOD, VACUUM FULL and CLUSTER rewrite the whole table "
      "under ACCESS EXCLUSIVE",
      "do it with pg_repack (or REPACK CONCURRENTLY on PostgreSQL 19+), or create a new table, copy the rows "
      "in batches and switch (the rename-table route)",
      "squawk prefer-repack", size_matters=True)
def _rewrite(st, walk):
    node = st.node
    for cmd in cmds(node, AT.AT_SetTableSpace, AT.AT_SetLogged, AT.AT_SetUnLogged, AT.AT_SetAccessMethod,
                    AT.AT_SetExpression):
        if existing(st, walk):
            yield f"{table_of(node)}: {AT(cmd.subtype).name[3:]}"
    if isinstance(node, ast.VacuumStmt) and any(o.defname == "full" for o in node.options or ()):
        for rel in node.rels or ():
            yield f"VACUUM FULL {rel.relation.relname}"
        if not node.rels:
            yield "VACUUM FULL of every table in the database"
    if isinstance(node, ast.ClusterStmt):
        yield f"CLUSTER {node.relation.relname if node.relation else '(every clustered table)'}"


@rule("rename-column", "refuse",
      "code still running (the old release during a deploy, caches, other services) reads the old name and fails",
      EXPAND_CONTRACT.format(what="column") + "; or, when every reader has moved, allow it with "
      "-- pgsteady: allow rename-column",
      "squawk renaming-column; strong_migrations renaming a column")
def _rename_column(st, walk):
    node = st.node
    if isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_COLUMN and existing(st, walk):
        yield f"{table_of(node)}.{node.subname} to {node.newname}"


@rule("rename-table", "refuse",
      "code still running reads and writes the old name and fails",
      EXPAND_CONTRACT.format(what="table") + "; or rename it and leave a view under the old name for the "
      "old code:\nBEGIN; ALTER TABLE posts RENAME TO articles; CREATE VIEW posts AS SELECT * FROM articles; COMMIT;",
      "squawk renaming-table; strong_migrations renaming a table")
def _rename_table(st, walk):
    node = st.node
    if isinstance(node, ast.RenameStmt) and node.renameType == ObjectType.OBJECT_TABLE and existing(st, walk):
        yield f"{table_of(node)} to {node.newname}"


@rule("rename-schema", "refuse", "every query that names the schema fails",
      EXPAND_CONTRACT.format(what="schema"), "strong_migrations renaming a schema")
def _rename_schema(st, walk):
    if isinstance(st.node, ast.RenameStmt) and st.node.renameType == ObjectType.OBJECT_SCHEMA:
        yield f"schema {st.node.subname} to {st.node.newname}"


@rule("rename-enum-value", "refuse", "rows and code that use the old value break",
      "add the new value, make the code write it and read both, backfill, then stop using the old one:\n"
      "ALTER TYPE status ADD VALUE 'completed' AFTER 'done';",
      "strong_migrations renaming an enum value")
def _rename_enum_value(st, walk):
    if isinstance(st.node, ast.AlterEnumStmt) and st.node.oldVal:
        yield f"{st.node.oldVal!r} to {st.node.newVal!r}"


@rule("enum-value-order", "note",
      "ADD VALUE without BEFORE or AFTER appends the value: comparisons such as status < 'approved' change meaning",
      "say where it goes:\nALTER TYPE status ADD VALUE 'pending_review' BEFORE 'approved';",
      "squawk require-enum-value-ordering")
def _enum_order(st, walk):
    node = st.node
    if isinstance(node, ast.AlterEnumStmt) and not node.oldVal and not node.newValNeighbor:
        yield f"{'.'.join(n.sval for n in node.typeName)} gets {node.newVal!r} at the end"


@rule("enum-value-in-transaction", "refuse",
      "a value added with ALTER TYPE ... ADD VALUE cannot be used before its transaction commits",
      "commit the ADD VALUE first (its own step), then use the value in a later statement",
      "PostgreSQL 12+ (unsafe use of new value)")
def _enum_in_tx(st, walk):
    if st.in_transaction and walk.enum_values_in_transaction:
        for value in walk.enum_values_in_transaction:
            if value in st.text:
                yield f"{value!r} was added earlier in this transaction"


@rule("drop-column", "refuse",
      "ORMs select every column they know: the running release fails as soon as the column is gone",
      "stop reading and writing it in the code (Django: remove the field and deploy; Rails: ignored_columns), "
      "deploy, then drop it with -- pgsteady: allow drop-column",
      "squawk ban-drop-column; strong_migrations removing a column")
def _drop_column(st, walk):
    for cmd in cmds(st.node, AT.AT_DropColumn):
        if existing(st, walk):
            yield f"{table_of(st.node)}.{cmd.name}"


@rule("drop-table", "refuse", "the rows are gone for good, and code that still uses the table fails",
      "stop using it in the code and deploy; keep the data (rename it away, or a dump) until you are sure; "
      "then drop it with -- pgsteady: allow drop-table",
      "squawk ban-drop-table; strong_migrations creating a table with the force option")
def _drop_table(st, walk):
    node = st.node
    if isinstance(node, ast.DropStmt) and node.removeType == ObjectType.OBJECT_TABLE:
        names = [".".join(quote(p.sval) for p in obj) for obj in node.objects]
        dropped = [n for n in names if n not in walk.created]
        if dropped:
            yield f"DROP TABLE {', '.join(dropped)}" + (" CASCADE" if node.behavior == DropBehavior.DROP_CASCADE else "")


@rule("drop-database", "refuse", "a migration never drops a database", "drop it by hand if you really mean it",
      "squawk ban-drop-database")
def _drop_database(st, walk):
    if isinstance(st.node, ast.DropdbStmt):
        yield f"DROP DATABASE {st.node.dbname}"


@rule("truncate-cascade", "refuse",
      "TRUNCATE ... CASCADE also empties every table that references these, and their referrers",
      "name every table to truncate, without CASCADE", "squawk ban-truncate-cascade")
def _truncate_cascade(st, walk):
    if isinstance(st.node, ast.TruncateStmt) and st.node.behavior == DropBehavior.DROP_CASCADE:
        yield "TRUNCATE " + ", ".join(r.relname for r in st.node.relations) + " CASCADE"


@rule("detach-partition", "refuse",
      "DETACH PARTITION without CONCURRENTLY takes ACCESS EXCLUSIVE on the parent: every query on it waits",
      "ALTER TABLE parent DETACH PARTITION part CONCURRENTLY;  -- PostgreSQL 14+, outside a transaction block",
      "squawk require-concurrent-partition-detach")
def _detach(st, walk):
    for cmd in cmds(st.node, AT.AT_DetachPartition):
        if not cmd.def_.concurrent:
            yield f"{table_of(st.node)} DETACH PARTITION {cmd.def_.name.relname}"


@rule("attach-partition-scan", "note",
      "ATTACH PARTITION scans the partition under ACCESS EXCLUSIVE to check the bound, unless a CHECK proves it",
      "add a CHECK matching the bound NOT VALID, validate it, then attach (no scan), then drop the check",
      "")
def _attach(st, walk):
    for cmd in cmds(st.node, AT.AT_AttachPartition):
        yield f"{cmd.def_.name.relname} into {table_of(st.node)}"


@rule("explicit-lock", "refuse", "LOCK TABLE holds its lock to the end of the transaction, however long that is",
      "drop the LOCK: each statement takes the lock it needs, under lock_timeout", "")
def _lock(st, walk):
    if isinstance(st.node, ast.LockStmt):
        yield "LOCK TABLE " + ", ".join(r.relname for r in st.node.relations)


@rule("refresh-without-concurrently", "refuse",
      "REFRESH MATERIALIZED VIEW without CONCURRENTLY blocks every read of the view until it is done",
      "give the view a unique index, then REFRESH MATERIALIZED VIEW CONCURRENTLY v;", "")
def _refresh(st, walk):
    node = st.node
    if isinstance(node, ast.RefreshMatViewStmt) and not node.concurrent and not node.skipData:
        yield f"REFRESH MATERIALIZED VIEW {node.relation.relname}"
