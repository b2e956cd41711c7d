"""Lint a schema migration: every statement of a file, in order, against the rule table.

Two kinds of text come here. A change file whose ``ddl`` is a migration
(``mode="change"``: pgsteady runs each statement as a step, with
lock_timeout and retries), and a plain .sql file written by another tool
(``mode="sql"``: Alembic, Django or Flyway output, run by that tool, with its
BEGIN/COMMIT, SET statements and comments). Either way the text is split
with PostgreSQL's parser, each statement keeps its line number, and the walk
remembers what earlier statements did (tables created, NOT NULL checks
validated, timeouts set, the open transaction) so that a safe route spread
over several statements passes.

The rules are in ``migration_rules.RULES``; index statements also get the
index rules of ``lint`` (their one home).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import psycopg
from pglast import ast, parse_sql
from pglast.enums import AlterTableType as AT, ConstrType as CT
from pglast.parser import ParseError, scan

from ..queries import Queries
from ..indexes import probes
from . import statements
from .lint import RULES as INDEX_RULES, Finding, LintResult, _syntax, concurrent_build_bug
from .migration_files import LOCKING, is_begin, is_end, not_null_check, setting, writes_rows
from .migration_rules import RULES, SMALL_TABLE_BYTES, VOLATILE, added_constraints, cmds, table_of
from .statements import StatementError

_ALLOW = re.compile(r"pgsteady:\s*allow\s+([a-z0-9, -]+)", re.IGNORECASE)


@dataclass
class Statement:
    index: int  # 1-based position in the file
    line: int  # line of its first token
    text: str
    node: Any
    in_transaction: bool = False
    allowed: frozenset[str] = frozenset()

    @property
    def transactional(self) -> bool:
        """Can it run inside a transaction block? (CONCURRENTLY, VACUUM and friends cannot.)"""
        return not concurrent(self.node) and not isinstance(self.node, (ast.VacuumStmt, ast.AlterSystemStmt))

    @property
    def heading(self) -> str:
        return " ".join(self.text.split())[:100]


@dataclass
class MigrationFinding(Finding):
    line: int = 0
    statement: int = 0
    route: str | None = None

    @property
    def reason(self) -> str:
        return RULES[self.rule].reason if self.rule in RULES else INDEX_RULES[self.rule]


@dataclass
class MigrationLintResult(LintResult):
    steps: list[Statement] = field(default_factory=list)
    mode: str = "change"

    def add(self, rule: str, message: str, severity: str = "refuse", line: int = 0) -> None:
        self.findings.append(MigrationFinding(rule, severity, message, line=line))


def concurrent(node: Any) -> bool:
    if isinstance(node, (ast.IndexStmt, ast.DropStmt)):
        return bool(node.concurrent)
    if isinstance(node, ast.ReindexStmt):
        return any(p.defname == "concurrently" for p in node.params or ())
    return any(cmd.def_.concurrent for cmd in cmds(node, AT.AT_DetachPartition))


def split(text: str) -> list[Statement]:
    """The statements of ``text`` with their line numbers and ``-- pgsteady: allow`` comments."""
    try:
        raws = parse_sql(text)
        comments = [t for t in scan(text) if t.name in ("SQL_COMMENT", "C_COMMENT")]
    except ParseError as exc:
        where = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        error = StatementError(f"the SQL does not parse: {exc.args[0]}")
        error.line = text.count("\n", 0, where) + 1 if where is not None else 0
        raise error from None
    found, previous_end = [], 0
    for i, raw in enumerate(raws, 1):
        start = raw.stmt_location
        end = start + raw.stmt_len if raw.stmt_len else len(text)
        allowed = set()
        for c in comments:
            if previous_end <= c.start < end:
                for names in _ALLOW.findall(text[c.start:c.end + 1]):
                    allowed |= {n.strip().lower() for n in names.split(",") if n.strip()}
        found.append(Statement(i, text.count("\n", 0, start) + 1, text[start:end].strip(), raw.stmt,
                               allowed=frozenset(allowed)))
        previous_end = end
    return found


class Catalogue:
    """What the database knows that lint needs: column types, sizes, volatility, NOT NULL proofs."""

    def __init__(self, conn: psycopg.Connection, q: Queries) -> None:
        self.conn, self.q = conn, q
        self.version_num = probes.server_facts(conn)["version_num"]

    def column_type(self, table: str, column: str) -> tuple[str, int, str] | None:
        found = probes.column_type(self.conn, table, column)
        return (found["typname"], found["atttypmod"], found["shown"]) if found else None

    def column_checks(self, table: str, column: str) -> int:
        return probes.column_checks(self.conn, table, column)

    def table_bytes(self, table: str) -> int | None:
        return probes.relation_bytes(self.conn, table)

    def volatility(self, names: list[str]) -> dict[str, str]:
        return probes.function_volatility(self.conn, names)

    def proven_not_null(self, table: str, column: str) -> bool:
        return probes.not_null_proven(self.conn, table, column)


class Walk:
    """What the statements before this one did; the rules read it."""

    def __init__(self, steps: list[Statement], mode: str, catalogue: Catalogue | None) -> None:
        self.statements, self.mode, self.catalogue = steps, mode, catalogue
        self.created: set[str] = set()
        self.proven: set[tuple[str, str]] = set()
        self.checks: dict[str, tuple[str, str]] = {}  # constraint name -> (table, column) of CHECK (c IS NOT NULL)
        self.lock_timeout = self.statement_timeout = False
        self.tx_open = False
        self.tx_locks: set[str] = set()
        self.enum_values_in_transaction: list[str] = []
        self._said: set[str] = set()

    def said(self, rule: str) -> bool:
        """True after the first time: for rules that speak once per file."""
        if rule in self._said:
            return True
        self._said.add(rule)
        return False

    def volatile(self, names: list[str]) -> list[str]:
        if self.catalogue is not None and names:
            known = self.catalogue.volatility(names)
            return [n for n in names if known.get(n) == "v"]
        return [n for n in names if n in VOLATILE]

    def unknown_functions(self, names: list[str]) -> list[str]:
        if self.catalogue is not None:
            known = self.catalogue.volatility(names) if names else {}
            return [n for n in names if n not in known]
        return [n for n in names if n not in VOLATILE and n not in _KNOWN_STABLE]

    def column_type(self, table: str, column: str):
        return self.catalogue.column_type(table, column) if self.catalogue and table not in self.created else None

    def column_checks(self, table: str, column: str) -> int:
        return self.catalogue.column_checks(table, column) if self.catalogue and table not in self.created else 0

    def proven_not_null(self, table: str, column: str) -> bool:
        if (table, column) in self.proven:
            return True
        return self.catalogue is not None and self.catalogue.proven_not_null(table, column)

    def small(self, table: str) -> int | None:
        """The table's size when it is known to be small, else None."""
        if self.catalogue is None:
            return None
        size = self.catalogue.table_bytes(table)
        return size if size is not None and size < SMALL_TABLE_BYTES else None

    def after(self, st: Statement) -> None:
        """Remember what ``st`` did, for the statements after it."""
        node = st.node
        if is_begin(node):
            self.tx_open = True
        elif is_end(node):
            self.tx_open, self.tx_locks, self.enum_values_in_transaction = False, set(), []
        if setting(node, "lock_timeout") not in (None, "0"):
            self.lock_timeout = True
        if setting(node, "statement_timeout") not in (None, "0"):
            self.statement_timeout = True
        if isinstance(node, (ast.CreateStmt, ast.CreateTableAsStmt)):
            rel = node.relation if isinstance(node, ast.CreateStmt) else node.into.rel
            self.created.add(table_of(rel))
        if isinstance(node, ast.AlterTableStmt):
            table = table_of(node)
            for con in added_constraints(node, CT.CONSTR_CHECK):
                column = not_null_check(con)
                if column and con.conname:
                    self.checks[con.conname] = (table, column)
                if column and not con.skip_validation:
                    self.proven.add((table, column))
            for cmd in cmds(node, AT.AT_ValidateConstraint):
                if cmd.name in self.checks:
                    self.proven.add(self.checks[cmd.name])
        if isinstance(node, ast.AlterEnumStmt) and st.in_transaction and not node.oldVal:
            self.enum_values_in_transaction.append(node.newVal)
        if st.in_transaction and isinstance(node, LOCKING) and not writes_rows(node):
            if getattr(node, "relation", None) is not None:
                self.tx_locks.add(table_of(node))


_KNOWN_STABLE = {"now", "current_timestamp", "statement_timestamp", "transaction_timestamp", "current_date",
                 "lower", "upper", "coalesce", "jsonb_build_object", "json_build_object", "to_jsonb", "md5",
                 "concat", "length", "char_length", "substring", "trim", "abs", "round", "make_interval"}


def lint_text(text: str, mode: str = "sql", catalogue: Catalogue | None = None,
              in_transaction: bool = False) -> MigrationLintResult:
    """Every rule against every statement of ``text``; ``in_transaction``: the tool wraps the file in one."""
    result = MigrationLintResult(mode=mode)
    try:
        steps = split(text)
    except StatementError as exc:
        result.add("parse-error", str(exc), line=getattr(exc, "line", 0))
        return result
    result.steps = steps
    walk = Walk(steps, mode, catalogue)
    walk.tx_open = in_transaction
    for st in steps:
        st.in_transaction = walk.tx_open or is_begin(st.node)
        for finding in _statement_findings(st, walk):
            result.findings.append(finding)
        walk.after(st)
    return result


def _statement_findings(st: Statement, walk: Walk):
    def found(rule: str, message: str, severity: str, route: str | None = None) -> MigrationFinding:
        if severity == "refuse" and rule in st.allowed:
            severity, message = "note", f"allowed by comment: {message}"
        return MigrationFinding(rule, severity, message, line=st.line, statement=st.index, route=route)

    node = st.node
    if walk.mode == "change" and isinstance(node, ast.TransactionStmt):
        yield found("transaction-block", "remove BEGIN/COMMIT: each statement of a change runs as its own step, "
                    "in its own transaction, so no lock is held across steps", "refuse")
        return
    if concurrent(node) and st.in_transaction:
        yield found("transaction-block", f"line {st.line} runs CONCURRENTLY inside a transaction block: "
                    "PostgreSQL refuses it; move it out of BEGIN/COMMIT", "refuse")
    if statements.describe(node, st.text) is not None:
        checked = LintResult()
        _syntax(st.text, checked)
        for f in checked.findings:
            if f.rule == "non-concurrent-create" and table_of(node) in walk.created:
                continue  # an index on a table created in this file locks nobody out
            yield found(f.rule, f.message, f.severity)
        if concurrent(node) and walk.catalogue is not None and concurrent_build_bug(walk.catalogue.version_num) \
                and not isinstance(node, ast.DropStmt):
            yield found("concurrent-build-bug", "this server's PostgreSQL (14.0-14.3) can build indexes "
                        "CONCURRENTLY that miss rows; upgrade to 14.4 or later first", "refuse")
    for rule in RULES.values():
        if rule.mode not in ("any", walk.mode):
            continue
        for message in rule.check(st, walk):
            severity = rule.severity
            size = walk.small(table_of(node)) if rule.size_matters and getattr(node, "relation", None) else None
            if severity == "refuse" and size is not None:
                severity, message = "note", f"{message} (the table is only {size:,} bytes: brief)"
            yield found(rule.name, message, severity, rule.route)


def lint_change(change, conn: psycopg.Connection | None, q: Queries | None) -> MigrationLintResult:
    """Lint for a change file whose ddl is a migration; the rollback, when written, is linted the same way."""
    catalogue = Catalogue(conn, q) if conn is not None and q is not None else None
    result = lint_text(change.ddl, "change", catalogue)
    if catalogue is not None:
        result.server_version = probes.server_facts(conn)["version"]
    result.rollback = change.rollback
    if change.rollback:
        back = lint_text(change.rollback, "change")
        if back.findings and any(f.rule == "parse-error" for f in back.findings):
            result.add("parse-error", f"rollback: {back.findings[0].message}")
    return result


def is_migration(text: str) -> bool:
    """Is this DDL more than one index change (several statements, or another kind of statement)?"""
    try:
        nodes = statements.parse(text)
    except statements.StatementError:
        return False  # lint reports the parse error the usual way
    if any(isinstance(n, ast.TransactionStmt) for n in nodes):
        nodes = [n for n in nodes if not isinstance(n, ast.TransactionStmt)]
        return len(nodes) != 1 or statements.describe(nodes[0], text) is None
    return len(nodes) > 1 or (len(nodes) == 1 and statements.describe(nodes[0], text) is None)


def lint_file(path, dsn: str | None, schema: str, in_transaction: bool = False) -> MigrationLintResult:
    """A plain .sql migration as it is, with catalogue facts when ``dsn`` is given."""
    from ..database import connect
    from ..errors import ConfigError
    from ..queries import for_schema

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text; save it as UTF-8 and lint again") from None
    if dsn is None:
        return lint_text(text, "sql", None, in_transaction)
    with connect(dsn, autocommit=True) as conn:
        result = lint_text(text, "sql", Catalogue(conn, for_schema(schema)), in_transaction)
        result.server_version = probes.server_facts(conn)["version"]
        return result
