"""`pgsteady indexes check`: the health of the existing indexes, for people and for CI.

Exit codes: 0 when no finding reaches --fail-on, 1 when one does, 2 on an
error (bad option, unreachable database), so a CI job can gate on it.
"""

from __future__ import annotations

import re
import textwrap

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .. import durations
from ..errors import ConfigError
from ..indexes import SEVERITIES, Report, Thresholds, check as run_check
from .base import answer_no, connect, echo_json, json_option

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(b|bytes|k|kb|m|mb|g|gb|t|tb)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "bytes": 1, "k": 1024, "kb": 1024, "m": 1024**2, "mb": 1024**2,
          "g": 1024**3, "gb": 1024**3, "t": 1024**4, "tb": 1024**4}


class Size(click.ParamType):
    """A size like 8MB, 500kB or 1048576 (bytes); units are powers of 1024, as in PostgreSQL."""

    name = "size"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        match = _SIZE.match(str(value))
        if not match:
            self.fail(f"{value!r} is not a size; use a number of bytes or a unit, like 500kB or 8MB", param, ctx)
        return int(float(match.group(1)) * _UNITS[(match.group(2) or "b").lower()])


class Duration(click.ParamType):
    """A duration like 90s, 30m, 12h or 7d (a plain number is seconds)."""

    name = "duration"

    def convert(self, value, param, ctx):
        if isinstance(value, int):
            return value
        try:
            return int(durations.seconds(value, param.opts[0] if param else "duration"))
        except ConfigError as exc:
            self.fail(str(exc), param, ctx)


class Fraction(click.ParamType):
    name = "fraction"

    def convert(self, value, param, ctx):
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = -1.0
        if not 0 <= number <= 1:
            self.fail(f"{value!r} is not a fraction between 0 and 1 (for example 0.5)", param, ctx)
        return number


_STYLE = {"error": "bold red", "warn": "yellow", "info": "cyan"}
_TITLE = {"error": "Errors", "warn": "Warnings", "info": "Notes"}


def _blocks(rows, level: str, console: Console) -> None:
    """Findings as indented, wrapped paragraphs: what a pipe or a narrow terminal can read whole."""
    width = max(40, console.width - 4)
    console.print(Text(f"{_TITLE[level]} ({len(rows)})", style=_STYLE[level]))
    for f in rows:
        console.print(Text(f"- {f.check}: {', '.join(f.objects)}", style=_STYLE[level]), soft_wrap=True)
        for line in textwrap.wrap(f.message, width, break_long_words=False, break_on_hyphens=False):
            console.print(Text("    " + line), soft_wrap=True)
        for statement in f.fix_statements:
            console.print(Text("    fix: " + statement), soft_wrap=True)
    console.print()


def render(report: Report, console: Console) -> None:
    """Findings per severity, worst first, then skipped checks and a one-line summary.

    On a wide terminal, one table per severity; piped or narrow, wrapped
    paragraphs (a table cell at 80 columns would cut or scatter a message)."""
    for level in reversed(SEVERITIES):
        rows = [f for f in report.findings if f.severity == level]
        if not rows:
            continue
        if not console.is_terminal or console.width < 120:
            _blocks(rows, level, console)
            continue
        table = Table(title=f"{_TITLE[level]} ({len(rows)})", title_style=_STYLE[level], title_justify="left",
                      show_lines=True, expand=True)
        # Wrapped, never cut: piped output is 80 columns wide, and a cut message loses its point.
        table.add_column("Check", style=_STYLE[level], overflow="fold")
        table.add_column("Objects", overflow="fold")
        table.add_column("Finding", ratio=3, overflow="fold")
        table.add_column("Fix", ratio=2, overflow="fold")
        for f in rows:
            table.add_row(*(Text(v) for v in (f.check, "\n".join(f.objects), f.message, f.fix_sql or "-")))
        console.print(table)
    for name, reason in report.skipped:
        console.print(Text(f"skipped {name}: {reason}", style="dim"), highlight=False, soft_wrap=True)
    counts = report.counts()
    words = {"error": ("error", "errors"), "warn": ("warning", "warnings"), "info": ("note", "notes")}
    state = ", ".join(f"{counts[level]} {words[level][counts[level] != 1]}"
                      for level in reversed(SEVERITIES) if counts[level]) or "clean"
    console.print(
        f"{state} · {report.indexes_checked} indexes, {len(report.checks_run)} checks run, "
        f"{len(report.skipped)} skipped · {report.database} ({report.duration_seconds:.2f}s)",
        highlight=False, soft_wrap=True,
    )


def register(cli: click.Group) -> None:
    @cli.group()
    def indexes() -> None:
        """Health checks of the existing indexes."""

    defaults = Thresholds()

    @indexes.command("check")
    @click.option("--schema", "scope_schema", metavar="S", help="Only this schema (default: every non-system schema).")
    @click.option("--table", metavar="T", help="Only this table (schema.table, or a table in --schema / search_path).")
    @click.option("--also", multiple=True, metavar="DSN",
                  help="A replica whose index scans also count before an index is called unused (repeatable).")
    @click.option("--fail-on", type=click.Choice(["warn", "error"]), default="warn", show_default=True,
                  help="Exit 1 when a finding is at least this severe.")
    @click.option("--unused-min-size", type=Size(), default=defaults.unused_min_bytes, show_default="1MB",
                  help="Smaller unused indexes are not reported.")
    @click.option("--bloat-min-size", type=Size(), default=defaults.bloat_min_bytes, show_default="10MB",
                  help="Smaller indexes are not estimated for bloat.")
    @click.option("--bloat-ratio", type=Fraction(), default=defaults.bloat_ratio, show_default=True,
                  help="Estimated share of empty space that makes an index bloated.")
    @click.option("--null-fraction", type=Fraction(), default=defaults.null_fraction, show_default=True,
                  help="Share of NULLs in the leading column that makes an index mostly NULL.")
    @click.option("--seq-scan-min-size", type=Size(), default=defaults.seq_scan_min_bytes, show_default="10MB",
                  help="Smaller tables are not reported for sequential scans.")
    @click.option("--min-seq-scans", type=click.IntRange(min=0), default=defaults.min_seq_scans, show_default=True,
                  help="Fewer sequential scans than this are not a pattern.")
    @click.option("--unused-min-history", type=Duration(), default=defaults.unused_min_history_seconds,
                  show_default="7d", help="Statistics younger than this (since their reset) call no index unused.")
    @click.option("--shape-min-rows", type=click.IntRange(min=0), default=defaults.shape_min_rows,
                  show_default=True, help="No shape advice for indexes of smaller tables.")
    @json_option
    @click.pass_context
    def check_command(ctx: click.Context, scope_schema, table, also, fail_on, unused_min_size, bloat_min_size,
                      bloat_ratio, null_fraction, seq_scan_min_size, min_seq_scans, unused_min_history,
                      shape_min_rows, as_json) -> None:
        """Check the existing indexes: invalid, duplicate, redundant, unused, missing for a
        foreign key, bloated, badly shaped; and tables read mostly by sequential scans.

        Every finding comes with SQL that fixes it without blocking writes
        (CONCURRENTLY) and SQL that undoes the fix.
        """
        thresholds = Thresholds(
            unused_min_bytes=unused_min_size, bloat_min_bytes=bloat_min_size, bloat_ratio=bloat_ratio,
            null_fraction=null_fraction, seq_scan_min_bytes=seq_scan_min_size, min_seq_scans=min_seq_scans,
            unused_min_history_seconds=unused_min_history, shape_min_rows=shape_min_rows,
        )
        state = ctx.obj
        if state.read_dsn:
            # The catalogue comes from the replica; the primary's own scans still count.
            also = (state.resolved_dsn(), *also)
        with connect(state, reading=True, schema=False) as conn:  # the indexes of any database, pgsteady's or not
            report = run_check(conn, schema=scope_schema, table=table, also=also, thresholds=thresholds)
        if as_json:
            echo_json(report.to_dict())
        else:
            render(report, Console())
        if report.reaches(fail_on):
            answer_no()
