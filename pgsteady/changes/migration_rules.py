"""The lint rules for schema migrations: one table, each rule a small function over one statement.

A rule looks at one parsed statement (``Statement.node``, a pglast node) and
what the walk through the file knows so far (``Walk``: tables created
earlier in the file, NOT NULL checks validated, timeouts set, and catalogue
facts when a database is at hand), and yields one message per problem.
Each rule carries its reason, its safe route (the fix, with SQL) and the
names the same check has in squawk and strong_migrations, so that the docs
table is generated from here (``docs_table``) and nowhere else.

Severities: ``refuse`` (the change may not go ahead as written) and
``note`` (worth reading). A ``-- pgsteady: allow <rule>`` comment right
before a statement turns that rule's refusal into a note, for the cases a
team has made safe another way (the code stopped reading the column).

Index statements (CREATE/DROP/REINDEX INDEX) keep their rules in ``lint``
(``non-concurrent-create`` and the rest); this table adds what only a
migration has. Behaviour is PostgreSQL 14 and later: ADD COLUMN with a
non-volatile default has not rewritten the table since 11, SET NOT NULL
uses a validated CHECK (col IS NOT NULL) instead of scanning since 12.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterator

from pglast import ast
from pglast.enums import AlterTableType as AT, ConstrType as CT, ObjectType
from pglast.visitors import Visitor

if TYPE_CHECKING:  # pragma: no cover
    from .migration_lint import Statement, Walk

# Below this size a table rewrite or a scan under ACCESS EXCLUSIVE is over in
# well under a second on ordinary hardware: the finding is a note, not a refusal.
SMALL_TABLE_BYTES = 8 << 20
# PostgreSQL truncates longer identifiers (NAMEDATALEN - 1).
MAX_IDENTIFIER_BYTES = 63

# Built-in functions that are VOLATILE, for lint without a database (with
# one, pg_proc.provolatile answers for every function).
VOLATILE = {"random", "random_normal", "gen_random_uuid", "uuid_generate_v1", "uuid_generate_v1mc",
            "uuid_generate_v4", "clock_timestamp", "timeofday", "nextval", "setval", "txid_current",
            "pg_current_xact_id", "uuidv4", "uuidv7", "gen_random_bytes"}

SERIAL = {"serial", "serial4", "bigserial", "serial8", "smallserial", "serial2"}


@dataclass(frozen=True)
class Rule:
    name: str
    severity: str  # refuse | note
    reason: str  # one line: why it hurts
    route: str  # the safe route, with SQL
    check: Callable[["Statement", "Walk"], Iterator[str]]
    peers: str = ""  # the same check in squawk / strong_migrations
    size_matters: bool = False  # a refusal becomes a note on a small existing table
    mode: str = "any"  # any | sql (only a file another tool runs) | change (only what pgsteady runs)


RULES: dict[str, Rule] = {}


def rule(name: str, severity: str, reason: str, route: str, peers: str = "", **kw: Any):
    def register(fn: Callable[["Statement", "Walk"], Iterator[str]]):
        assert name not in RULES, name
        RULES[name] = Rule(name, severity, reason, route, fn, peers, **kw)
        return fn
    return register


# -- reading the tree -----------------------------------------------------------------


def cmds(node: Any, *subtypes: AT) -> Iterator[Any]:
    """The ALTER TABLE subcommands of the given kinds."""
    if isinstance(node, ast.AlterTableStmt) and node.objtype == ObjectType.OBJECT_TABLE:
        for cmd in node.cmds or ():
            if cmd.subtype in subtypes:
                yield cmd


def table_of(node: Any) -> str:
    """The table a statement is on (or a RangeVar), as SQL names it: schema.name, quoted where needed."""
    from .statements import quote

    rel = getattr(node, "relation", node)
    if not isinstance(rel, ast.RangeVar):
        return ""
    return ".".join(quote(p) for p in (rel.schemaname, rel.relname) if p)


def type_name(type_node: Any) -> str:
    return type_node.names[-1].sval.lower() if type_node is not None else ""


def typmods(type_node: Any) -> list[int]:
    return [m.val.ival for m in (type_node.typmods or ()) if isinstance(getattr(m, "val", None), ast.Integer)]


def constraints(column: Any, *kinds: CT) -> list[Any]:
    return [c for c in (column.constraints or ()) if c.contype in kinds]


def added_constraints(node: Any, *kinds: CT) -> Iterator[Any]:
    for cmd in cmds(node, AT.AT_AddConstraint):
        if cmd.def_.contype in kinds:
            yield cmd.def_


def sql_of(expr: Any) -> str:
    from pglast.stream import RawStream

    return RawStream()(expr)


class _Calls(Visitor):
    def __init__(self) -> None:
        self.names: list[str] = []

    def visit_FuncCall(self, ancestors, node):
        self.names.append(node.funcname[-1].sval.lower())


def function_calls(expr: Any) -> list[str]:
    found = _Calls()
    found(expr)
    return found.names


def existing(st: "Statement", walk: "Walk") -> bool:
    """Does the statement act on a table that exists before this file (not one it created)?"""
    table = table_of(st.node)
    return bool(table) and table not in walk.created


def docs_table() -> str:
    """The rule table of docs/changes.md, generated from RULES."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "<br>")

    families = [f"{__package__}.migration_{name}" for name in ("columns", "tables", "files")]
    ordered = sorted(RULES.values(), key=lambda r: (families.index(r.check.__module__),
                                                    r.check.__code__.co_firstlineno))
    lines = ["| rule | severity | why | safe route | squawk / strong_migrations |", "|---|---|---|---|---|"]
    for r in ordered:
        severity = r.severity + (" (note on a small table)" if r.size_matters else "") + \
            (" (.sql files only)" if r.mode == "sql" else "")
        lines.append(f"| `{r.name}` | {severity} | {cell(r.reason)} | {cell(r.route)} | {cell(r.peers) or '–'} |")
    return "\n".join(lines) + "\n"


# The families register their rules into RULES when imported.
from . import migration_columns, migration_tables, migration_files  # noqa: E402,F401


if __name__ == "__main__":  # python -m pgsteady.changes.migration_rules > the table of docs/changes.md
    # The families register into the package's module, not into this __main__ copy of it.
    from pgsteady.changes.migration_rules import docs_table as table

    print(table(), end="")
