"""Migration rules, family 3: transactions, timeouts, backfills and the shape of new columns.

Registered in ``migration_rules.RULES``. Rules with ``mode="sql"`` only apply
to a plain .sql file another tool runs (Alembic, Django, Flyway output):
pgsteady runs a change's statements itself, each with lock_timeout and
retries, so those rules have nothing to say about a change file.
"""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType as AT, ConstrType as CT, TransactionStmtKind as TK, VariableSetKind
from pglast.parser import scan

from .migration_rules import MAX_IDENTIFIER_BYTES, SERIAL, cmds, rule, table_of, type_name

# The migration tools' own bookkeeping: tiny tables, written in the migration's transaction on purpose.
BOOKKEEPING = {"alembic_version", "django_migrations", "flyway_schema_history", "schema_migrations",
               "ar_internal_metadata"}

_BEGIN = (TK.TRANS_STMT_BEGIN, TK.TRANS_STMT_START)
_END = (TK.TRANS_STMT_COMMIT, TK.TRANS_STMT_ROLLBACK, TK.TRANS_STMT_COMMIT_PREPARED,
        TK.TRANS_STMT_ROLLBACK_PREPARED, TK.TRANS_STMT_PREPARE)

LOCKING = (ast.AlterTableStmt, ast.IndexStmt, ast.DropStmt, ast.TruncateStmt, ast.LockStmt, ast.RenameStmt,
           ast.CreateTrigStmt, ast.RefreshMatViewStmt, ast.ClusterStmt, ast.ReindexStmt, ast.AlterEnumStmt,
           ast.AlterDomainStmt, ast.VacuumStmt)


def is_begin(node) -> bool:
    return isinstance(node, ast.TransactionStmt) and node.kind in _BEGIN


def is_end(node) -> bool:
    return isinstance(node, ast.TransactionStmt) and node.kind in _END


def setting(node, name: str) -> str | None:
    """The value a SET/RESET statement gives ``name``: its text, "0" for DEFAULT/RESET, None when not that."""
    if not isinstance(node, ast.VariableSetStmt) or node.name != name:
        return None
    if node.kind in (VariableSetKind.VAR_SET_DEFAULT, VariableSetKind.VAR_RESET):
        return "0"
    arg = node.args[0].val if node.args else None
    value = str(getattr(arg, "sval", None) or getattr(arg, "ival", 0)).strip()
    return "0" if value.lower().rstrip("mshdin ") in ("0", "") else value  # 0, '0s', '0ms': off


def new_columns(node):
    """Column definitions a statement creates: CREATE TABLE columns and ADD COLUMN."""
    if isinstance(node, ast.CreateStmt):
        yield from (e for e in node.tableElts or () if isinstance(e, ast.ColumnDef))
    for cmd in cmds(node, AT.AT_AddColumn):
        yield cmd.def_


def writes_rows(node) -> str | None:
    """The existing table an UPDATE, DELETE or INSERT ... SELECT writes, else None."""
    if isinstance(node, (ast.UpdateStmt, ast.DeleteStmt)) or (isinstance(node, ast.InsertStmt) and node.selectStmt
                                                              and node.selectStmt.valuesLists is None):
        return node.relation.relname
    return None


# -- transactions ----------------------------------------------------------------------------


@rule("transaction-nesting", "refuse",
      "PostgreSQL has no nested transactions: a second BEGIN only warns, and the first COMMIT ends both",
      "one BEGIN, one COMMIT; or drop them when the tool wraps the file in a transaction itself",
      "squawk transaction-nesting", mode="sql")
def _nesting(st, walk):
    if is_begin(st.node) and walk.tx_open:
        yield f"BEGIN at line {st.line} inside the transaction opened earlier"
    if is_end(st.node) and not walk.tx_open:
        yield f"{st.node.kind.name[11:]} with no transaction open"


@rule("uncommitted-transaction", "refuse",
      "a BEGIN without COMMIT: the tool ends the session and every change is rolled back",
      "end the transaction with COMMIT;", "squawk ban-uncommitted-transaction", mode="sql")
def _uncommitted(st, walk):
    if is_begin(st.node) and not any(is_end(later.node) for later in walk.statements[st.index:]):
        yield f"BEGIN at line {st.line} is never committed"


@rule("backfill-in-transaction", "refuse",
      "an UPDATE/DELETE/INSERT in the transaction of earlier DDL keeps that DDL's lock for the whole backfill",
      "commit the DDL first, then backfill in its own batched statements (a separate step or migration):\n"
      "UPDATE t SET c = 0 WHERE id BETWEEN 1 AND 10000 AND c IS NULL;  -- repeat per batch",
      "strong_migrations backfilling data")
def _backfill_in_tx(st, walk):
    table = writes_rows(st.node)
    if table and st.in_transaction and walk.tx_locks and table not in BOOKKEEPING and table not in walk.created:
        yield f"{type(st.node).__name__[:-4].upper()} {table} after {', '.join(sorted(walk.tx_locks))} in one transaction"


@rule("validate-in-transaction", "refuse",
      "VALIDATE CONSTRAINT in the transaction that added the constraint (or other DDL on the table) scans every "
      "row while that DDL's ACCESS EXCLUSIVE is still held: the NOT VALID step bought nothing",
      "commit the ADD CONSTRAINT ... NOT VALID first; validate in a later transaction (a separate migration, or "
      "after COMMIT):\nALTER TABLE t ADD CONSTRAINT t_fk FOREIGN KEY (a_id) REFERENCES a (id) NOT VALID;\nCOMMIT;\n"
      "ALTER TABLE t VALIDATE CONSTRAINT t_fk;",
      "strong_migrations validate_foreign_key / validate_check_constraint in the same transaction")
def _validate_in_tx(st, walk):
    for cmd in cmds(st.node, AT.AT_ValidateConstraint):
        if st.in_transaction and table_of(st.node) in walk.tx_locks:
            yield f"VALIDATE CONSTRAINT {cmd.name} in the transaction that altered {table_of(st.node)}"


@rule("unbatched-backfill", "refuse",
      "an UPDATE or DELETE of a whole table is one long transaction: every row it touches stays locked, and "
      "dead rows pile up until it commits",
      "batch it by key range, committing each batch:\n"
      "UPDATE t SET c = 0 WHERE id >= 1 AND id < 10001 AND c IS NULL;  -- then 10001-20000, ...",
      "strong_migrations backfilling data", size_matters=True)
def _unbatched(st, walk):
    node = st.node
    if isinstance(node, (ast.UpdateStmt, ast.DeleteStmt)) and node.whereClause is None:
        table = node.relation.relname
        if table not in BOOKKEEPING and table_of(node) not in walk.created:
            yield f"{type(node).__name__[:-4].upper()} of every row of {table_of(node)}"


# -- timeouts -----------------------------------------------------------------------------------


@rule("missing-lock-timeout", "refuse",
      "without lock_timeout, DDL that waits for a lock makes every later query on the table queue behind it",
      "set it at the top of the file and let the deploy retry on a timeout (or run the file as a pgsteady "
      "change: every statement gets lock_timeout and retries):\nSET lock_timeout = '2s';",
      "squawk require-lock-timeout (require-timeout-settings); strong_migrations lock_timeout", mode="sql")
def _missing_lock_timeout(st, walk):
    if isinstance(st.node, LOCKING) and not walk.lock_timeout and not walk.said("missing-lock-timeout"):
        yield f"the first statement that takes a table lock (line {st.line}) runs with no lock_timeout"


@rule("lock-timeout-off", "refuse",
      "lock_timeout = 0 (or DEFAULT, RESET) lets DDL wait for a lock for ever, with every query queued behind it",
      "keep a short lock_timeout: SET lock_timeout = '2s';", "squawk require-lock-timeout")
def _lock_timeout_off(st, walk):
    value = setting(st.node, "lock_timeout")
    if value == "0":
        yield f"SET lock_timeout to {value!r}"


@rule("session-setting", "refuse",
      "SET standard_conforming_strings or backslash_quote, RESET ALL and DISCARD change how the server reads "
      "the statements after them, or undo lock_timeout: the statements would no longer run as lint read them",
      "leave the session's settings to the runner; set only what a statement needs (search_path, work_mem)", "")
def _session_setting(st, walk):
    node = st.node
    if isinstance(node, ast.VariableSetStmt) and (node.kind == VariableSetKind.VAR_RESET_ALL or
                                                  node.name in ("standard_conforming_strings", "backslash_quote")):
        yield f"line {st.line}: {st.heading}"
    if isinstance(node, ast.DiscardStmt):
        yield f"line {st.line}: DISCARD"


@rule("missing-statement-timeout", "note",
      "without statement_timeout a runaway statement holds its locks as long as it runs",
      "SET statement_timeout = '10min';  -- long enough for the slowest step", "squawk require-statement-timeout",
      mode="sql")
def _missing_statement_timeout(st, walk):
    if isinstance(st.node, LOCKING) and not walk.statement_timeout and not walk.said("missing-statement-timeout"):
        yield f"line {st.line} runs with no statement_timeout"


@rule("prefer-robust-stmts", "note",
      "outside a transaction a file that stops halfway fails again on rerun at the first statement that did run",
      "guard the statements: CREATE TABLE IF NOT EXISTS, ADD COLUMN IF NOT EXISTS, DROP ... IF EXISTS "
      "(for an index, not IF NOT EXISTS: drop an INVALID leftover first, see if-not-exists)",
      "squawk prefer-robust-stmts", mode="sql")
def _robust(st, walk):
    node = st.node
    if st.in_transaction:
        return
    if isinstance(node, ast.CreateStmt) and not node.if_not_exists:
        yield f"CREATE TABLE {table_of(node)} without IF NOT EXISTS"
    for cmd in cmds(node, AT.AT_AddColumn, AT.AT_DropColumn):
        if not cmd.missing_ok:
            what = "ADD COLUMN ... IF NOT EXISTS" if cmd.subtype == AT.AT_AddColumn else "DROP COLUMN ... IF EXISTS"
            yield f"{table_of(node)}: write {what}"
    if isinstance(node, ast.DropStmt) and not node.missing_ok:
        yield "DROP without IF EXISTS"


# -- the shape of new columns -----------------------------------------------------------------------


def _typed(node, names: set[str]):
    for col in new_columns(node):
        if type_name(col.typeName) in names:
            yield col


@rule("prefer-bigint", "note", "an int or smallint key runs out (2,147,483,647 / 32,767) on a busy table",
      "use bigint (bigint GENERATED ALWAYS AS IDENTITY for keys)",
      "squawk prefer-bigint-over-int, prefer-bigint-over-smallint")
def _bigint(st, walk):
    for col in _typed(st.node, {"int4", "int2", "serial", "serial4", "smallserial", "serial2"}):
        yield f"column {col.colname} is {type_name(col.typeName)}"


@rule("prefer-identity", "note", "serial columns own a separate sequence with its own permissions and dumps",
      "id bigint GENERATED ALWAYS AS IDENTITY", "squawk prefer-identity")
def _identity(st, walk):
    for col in _typed(st.node, SERIAL):
        yield f"column {col.colname} is {type_name(col.typeName)}"


@rule("prefer-text-field", "note",
      "changing a varchar(n) limit later takes ACCESS EXCLUSIVE; text with a CHECK can be changed NOT VALID",
      "c text CHECK (char_length(c) <= 200)", "squawk prefer-text-field")
def _text(st, walk):
    for col in _typed(st.node, {"varchar"}):
        if col.typeName.typmods:
            yield f"column {col.colname} is varchar(n)"


@rule("ban-char-field", "note", "char(n) pads with spaces and is slower than text or varchar",
      "use text (with a CHECK on the length if one is needed)", "squawk ban-char-field")
def _char(st, walk):
    for col in _typed(st.node, {"bpchar"}):
        yield f"column {col.colname} is char(n)"


@rule("prefer-timestamptz", "note", "timestamp without time zone stores wall-clock time: the zone is lost",
      "use timestamptz", "squawk prefer-timestamptz")
def _timestamptz(st, walk):
    for col in _typed(st.node, {"timestamp"}):
        yield f"column {col.colname} is timestamp"


@rule("prefer-jsonb", "note", "json has no equality operator: SELECT DISTINCT and UNION on the table fail",
      "use jsonb", "strong_migrations adding a json column")
def _jsonb(st, walk):
    for col in _typed(st.node, {"json"}):
        yield f"column {col.colname} is json"


@rule("wide-index", "note", "a non-unique index of more than three columns rarely helps and costs every write",
      "lead with the columns that narrow the rows most, and keep to three",
      "strong_migrations keeping non-unique indexes to three columns or less")
def _wide(st, walk):
    node = st.node
    if isinstance(node, ast.IndexStmt) and not node.unique and len(node.indexParams) > 3:
        yield f"{len(node.indexParams)} columns in {node.idxname or 'the index'}"


@rule("identifier-too-long", "refuse",
      f"PostgreSQL cuts names at {MAX_IDENTIFIER_BYTES} bytes with only a notice: a rerun or a later DROP by "
      "the full name finds nothing", f"use a name of at most {MAX_IDENTIFIER_BYTES} bytes",
      "squawk identifier-too-long")
def _long_names(st, walk):
    # The parser has already cut them, so read the identifiers from the tokens.
    names = []
    for token in scan(st.text):
        if token.name == "IDENT":
            word = st.text[token.start:token.end + 1]
            names.append(word[1:-1].replace('""', '"') if word.startswith('"') else word.lower())
    for name in dict.fromkeys(names):
        if len(name.encode()) > MAX_IDENTIFIER_BYTES:
            yield f"{name[:20]}... is {len(name.encode())} bytes"


@rule("duplicate-column", "refuse", "a column named twice fails when the statement runs",
      "name each column once", "squawk ban-duplicate-column-assignments")
def _duplicates(st, walk):
    node = st.node
    names = [c.colname for c in new_columns(node)]
    if isinstance(node, ast.UpdateStmt):
        names = [t.name for t in node.targetList]
    for name in sorted({n for n in names if names.count(n) > 1}):
        yield f"column {name} twice"


def not_null_check(con) -> str | None:
    """The column a ``CHECK (col IS NOT NULL)`` constraint proves, else None."""
    expr = con.raw_expr if con.contype == CT.CONSTR_CHECK else None
    if isinstance(expr, ast.NullTest) and expr.nulltesttype == 1 and isinstance(expr.arg, ast.ColumnRef):
        return expr.arg.fields[-1].sval
    return None


__all__ = ["BOOKKEEPING", "LOCKING", "is_begin", "is_end", "not_null_check", "setting"]
