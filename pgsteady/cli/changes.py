"""`pgsteady change new|lint|plan|rehearse|apply|verify|rollback|list|show`."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import click
import psycopg
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ..changes import cleanup, files, migration_lint, progress, record, writes
from ..changes.lint import lint as run_lint
from ..changes.migration_session import open_session
from ..changes.steps import ChangeFailed, ChangeRefused, Session, one_line
from ..errors import ConfigError
from ..indexes.catalog import human_bytes
from ..queries import for_schema
from .base import answer_no, clean, connect, echo_json, json_option

FILE = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
err = Console(stderr=True)


def shown(value: object) -> Text:
    """A table cell from stored data: never read as rich markup (a title may hold "[/x]")."""
    return Text(clean(value))


def _command(ctx: click.Context, file: Path, flags: dict) -> str:
    """The command line as the record shows it (never the DSN: it may hold a password)."""
    words = ctx.command_path.split() + [str(file)]
    for name, value in flags.items():
        if value is True:
            words.append(f"--{name}")
        elif value not in (None, False):
            words += [f"--{name}", str(value)]
    return shlex.join(words)


def _session(state, file: Path, flags: dict | None = None) -> Session:
    ctx = click.get_current_context()
    return open_session(state.resolved_dsn(), state.schema, file, _command(ctx, file, flags or {}),
                        app=state.app(required=False))


def _print_lint(result, as_json: bool) -> None:
    if as_json:
        echo_json(result.to_json())
        return
    for f in result.findings:
        where = f"line {f.line}: " if getattr(f, "line", 0) else ""  # a migration's statement
        click.echo(f"{f.severity:<7} {f.rule}: {f.reason}\n        {where}{f.message}")
    click.echo("lint: refused" if result.refused else f"lint: ok{' (with notes)' if result.findings else ''}")
    if result.rollback:
        click.echo(f"rollback: {result.rollback}")


def _configured_dsn(state) -> str | None:
    """The database to read facts from when one is configured; never the embedded server, for a .sql file."""
    if state.dsn or os.environ.get("PGSTEADY_DSN") or state.app_path:
        return state.resolved_dsn()
    return None


def _print_sql_lint(file: Path, result, as_json: bool) -> None:
    if as_json:
        echo_json({**result.to_json(), "file": str(file), "statements": len(result.steps)})
        return
    for f in result.findings:
        click.echo(clean(f"{file}:{f.line}: {f.severity} {f.rule}: {f.reason}\n    {f.message}"))
        if f.route and f.severity == "refuse":
            click.echo("    fix: " + clean(f.route).replace("\n", "\n         "))
    refused = sum(f.severity == "refuse" for f in result.findings)
    click.echo(f"lint: {len(result.steps)} statements, " +
               (f"{refused} refused" if refused else "ok" + (" (with notes)" if result.findings else "")))


def _print_queries(figures: list[dict]) -> None:
    table = Table(box=None, header_style="bold")
    for col in ("query", "median", "p95", "runs", "plan"):
        table.add_column(col, overflow="fold")
    for f in figures:
        table.add_row(*map(shown, (f["name"], f"{f['median_ms']:.2f} ms", f"{f['p95_ms']:.2f} ms", f["runs"],
                                   "\n".join(f["plan_lines"]))))
    Console().print(table)


def _follow(session: Session, job_id: int, step_id: int, timeout: float | None, as_json: bool) -> dict:
    bar = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                   console=err, disable=as_json, transient=True)
    with bar:
        task = bar.add_task("starting", total=None)

        def show(snap: progress.Snapshot) -> None:
            bar.update(task, description=snap.describe[:110], total=snap.total, completed=snap.done or 0)

        last = progress.follow(session.conn, session.q, job_id, step_id, show, timeout=timeout)
    step = session.conn.execute(session.q.get_step, {"id": step_id}).fetchone()
    summary = step[6] if step else None
    if last.job_state != "succeeded":
        raise ChangeFailed(f"job {job_id} {last.job_state}: {summary or last.last_error}")
    return {"job_id": job_id, "state": last.job_state, "summary": summary}


def _enqueued(session: Session, job_id: int, step_id: int, created: bool, wait: bool, timeout, as_json: bool,
              what: str) -> None:
    verb = "enqueued" if created else "already enqueued as"
    if not as_json:
        click.echo(f"{what}: {verb} job {job_id} on the maintenance queue (step {step_id})")
    result = {"job_id": job_id, "step_id": step_id, "created": created}
    if wait:
        result.update(_follow(session, job_id, step_id, timeout, as_json))
        session.note()
        if not as_json:
            click.echo(f"{what}: {result['summary']}")
            click.echo(f"record: {session.change.note_path}")
    if as_json:
        echo_json(result)


class _OneLineGroup(click.Group):
    """A database error in any change command is one line and exit 2, never a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except psycopg.Error as exc:
            raise ChangeFailed(f"{ctx.invoked_subcommand or 'change'}: {one_line(exc)}") from None


def register(cli: click.Group) -> None:
    @cli.group("change", cls=_OneLineGroup)
    def change_group() -> None:
        """Index changes as reviewed, measured, repeatable work (see docs/changes.md).

        \b
        Steps, each recorded in the database and in a Markdown note next to the file:
          lint -> plan -> rehearse -> apply -> verify   (rollback when needed)
        A step runs the earlier ones that are not done yet for this file.
        """

    @change_group.command("new")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
    @click.option("--id", "change_id", help="The change id (default: the file name without .toml).")
    def new_cmd(file: Path, change_id: str | None) -> None:
        """Write a commented change file template to FILE."""
        if file.exists():
            raise ConfigError(f"{file} exists already; choose another name (nothing was written)")
        if file.suffix.lower() == ".md":
            raise ConfigError(f"{file}: a change file must not end in .md (its note is written there); use .toml")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(files.template(file, change_id or file.stem), encoding="utf-8")
        click.echo(f"wrote {file}; edit it, then run `pgsteady change lint {file}`")

    @change_group.command("lint")
    @FILE
    @click.option("--offline", is_flag=True, help="Only the rules that need no database.")
    @click.option("--in-transaction", is_flag=True,
                  help="A .sql file: the tool runs it in one transaction (Flyway, Django atomic migrations).")
    @json_option
    @click.pass_obj
    def lint_cmd(state, file: Path, offline: bool, in_transaction: bool, as_json: bool) -> None:
        """Refuse what would hurt. Exit 1 when a rule refuses the change.

        FILE is a change file (.toml), or a plain .sql migration from another
        tool (Alembic, Django, Flyway), linted as it is, one finding per
        statement with its line number.
        """
        if file.suffix.lower() == ".sql":
            result = migration_lint.lint_file(file, None if offline else _configured_dsn(state), state.schema,
                                              in_transaction=in_transaction)
            _print_sql_lint(file, result, as_json)
            if result.refused:
                answer_no()
            return
        if offline:
            result = run_lint(files.load(file), None, None)
        else:
            with _session(state, file, {"offline": offline}) as session:
                try:
                    result = session.lint()
                except ChangeRefused:
                    result = session.linted
        _print_lint(result, as_json)
        if result.refused:
            answer_no()

    @change_group.command("plan")
    @FILE
    @json_option
    @click.pass_obj
    def plan_cmd(state, file: Path, as_json: bool) -> None:
        """Capture current behaviour: table, indexes, EXPLAIN ANALYZE of each query, HypoPG, estimates."""
        with _session(state, file) as session:
            figures = session.plan()
        if as_json:
            echo_json(figures)
            return
        for t in [figures["table"]] if figures.get("table") else figures.get("tables", []):  # a migration: each
            click.echo(f"table {t['qualified']}: {t['estimated_rows']:,} rows, {human_bytes(t['heap_bytes'])} data, "
                       f"{human_bytes(t['index_bytes'])} in {len(t['indexes'])} index(es)")
            for i in t["indexes"]:
                click.echo(f"  {i['name']}: {human_bytes(i['bytes'])}{'' if i['is_valid'] else ' INVALID'}")
        _print_queries(figures["queries"])
        hypo = figures.get("hypothetical")
        if hypo and hypo.get("available"):
            for name, h in hypo["queries"].items():
                click.echo(f"HypoPG: {name} would {'use' if h['uses_index'] else 'NOT use'} the new index "
                           f"(cost {h['cost_before']:.0f} -> {h['cost_after']:.0f})")
        elif hypo:
            click.echo(hypo["reason"])
        w = figures.get("writes")
        if w:
            hot = f", {w['hot_updated'] / w['updated']:.0%} of them HOT" if w["updated"] else ""
            click.echo(f"writes so far (since the statistics reset): {w['inserted']:,} inserted, "
                       f"{w['updated']:,} updated{hot}, {w['deleted']:,} deleted; verify compares the write cost "
                       "after the apply")
        for warning in figures.get("write_warnings") or ():
            click.echo(clean(f"warning: {warning}"))
        est = figures.get("estimate")
        if est:
            click.echo(f"estimate: index about {human_bytes(est['index_bytes'])} ({est['basis']}), "
                       f"build about {est['build_seconds']}s (rough; the rehearsal measures it)")

    @change_group.command("rehearse")
    @FILE
    @json_option
    @click.pass_obj
    def rehearse_cmd(state, file: Path, as_json: bool) -> None:
        """Apply the change to a copy of the affected tables in a scratch schema, compare plans, drop the copy."""
        with _session(state, file) as session:
            figures = session.rehearse()
        if as_json:
            echo_json(figures)
            return
        if figures is None:
            click.echo("rehearsal skipped ([rehearse] skip = true); recorded as skipped")
            return
        click.echo(f"copied {figures['copied_rows']:,} rows ({human_bytes(figures['copied_bytes'])}) in "
                   f"{figures['timings']['copy']:.2f}s; change took {figures['timings']['apply']:.2f}s on the copy "
                   f"(whole table: about {figures['build_seconds_estimate']}s); {figures['seconds']:.2f}s in all, copy dropped")
        for st in figures.get("statements", []):  # a migration: what each statement cost on the copy
            if st["status"] == "done":
                click.echo(clean(f"{st['index']}. line {st['line']}: {st['seconds']:.3f}s, {st['strongest'] or 'no lock'}"
                                      f" held {st['held_seconds']:.3f}s (blocks {st['blocks']}), "
                                      f"{'rewrote ' + ', '.join(st['rewrote']) if st['rewrote'] else 'no rewrite'}"))
            else:
                click.echo(clean(f"{st['index']}. line {st['line']}: {st['status']}: {st.get('why') or st.get('error')}"))
        for q in figures["queries"]:
            click.echo(f"{q['name']}: {q['before']['median_ms']:.2f} ms -> {q['after']['median_ms']:.2f} ms")
            click.echo("  before: " + " / ".join(s.strip() for s in q["before"]["plan_lines"]))
            click.echo("  after:  " + " / ".join(s.strip() for s in q["after"]["plan_lines"]))

    @change_group.command("apply")
    @FILE
    @click.option("--wait", is_flag=True, help="Follow the build: phase, progress, and who it waits for.")
    @click.option("--timeout", type=float, help="With --wait: give up waiting after this many seconds (the build goes on).")
    @json_option
    @click.pass_obj
    def apply_cmd(state, file: Path, wait: bool, timeout: float | None, as_json: bool) -> None:
        """Build it as a durable job on the maintenance queue (run `pgsteady worker --queues maintenance`)."""
        with _session(state, file, {"wait": wait}) as session:
            job_id, step_id, created = session.apply()
            _enqueued(session, job_id, step_id, created, wait, timeout, as_json, "apply")

    @change_group.command("rollback")
    @FILE
    @click.option("--wait", is_flag=True, help="Follow the job until it ends.")
    @click.option("--timeout", type=float, help="With --wait: give up waiting after this many seconds.")
    @json_option
    @click.pass_obj
    def rollback_cmd(state, file: Path, wait: bool, timeout: float | None, as_json: bool) -> None:
        """Run the rollback the same safe way as the build, recorded too."""
        with _session(state, file, {"wait": wait}) as session:
            job_id, step_id, created = session.rollback()
            _enqueued(session, job_id, step_id, created, wait, timeout, as_json, "rollback")

    @change_group.command("verify")
    @FILE
    @click.option("--watch", "watch", help="Watch this long instead of the file's watch (0s, 90s, 10m).")
    @json_option
    @click.pass_obj
    def verify_cmd(state, file: Path, watch: str | None, as_json: bool) -> None:
        """Rerun the queries, compare with the plan, watch, give a verdict (exit 1: worse or not met)."""
        seconds = files.seconds(watch, "--watch") if watch is not None else None
        with _session(state, file, {"watch": watch}) as session, \
                Progress(TextColumn("watching"), BarColumn(), TimeElapsedColumn(), console=err,
                         disable=as_json) as bar:
            task = bar.add_task("watch", total=seconds if seconds is not None else session.change.watch_seconds)
            figures = session.verify(seconds, on_tick=lambda done, total: bar.update(task, completed=done))
        if as_json:
            echo_json(figures)
        else:
            _print_queries(figures["queries"])
            for c in figures["checks"]:
                state_text = "met" if c["met"] else "NOT met: " + "; ".join(c["problems"])
                click.echo(f"{c['name']}: {state_text}")
            click.echo(figures["watch"]["summary"])
            if figures.get("writes"):
                for line in writes.describe(figures["writes"]):
                    click.echo(clean(line))
            click.echo(f"verdict: {figures['verdict']} ({figures['why']})")
        if figures["verdict"] in ("worse", "not met", "mixed"):
            answer_no()

    @change_group.command("cleanup")
    @json_option
    @click.pass_obj
    def cleanup_cmd(state, as_json: bool) -> None:
        """Drop what killed commands left: rehearsal copies of dead sessions, steps left running."""
        with connect(state) as conn:
            swept = cleanup.sweep(conn, for_schema(state.schema))
        if as_json:
            echo_json({"schemas": swept.schemas, "steps": swept.steps, "refused": swept.refused})
        else:
            click.echo(swept.describe())

    @change_group.command("list")
    @click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
    @json_option
    @click.pass_obj
    def list_cmd(state, limit: int, as_json: bool) -> None:
        """Every recorded change, the newest first."""
        with connect(state) as conn:
            found = conn.cursor(row_factory=psycopg.rows.dict_row).execute(
                for_schema(state.schema).list_changes, {"limit": limit}).fetchall()
        if as_json:
            echo_json(found)
            return
        table = Table(box=None, header_style="bold")
        for col in ("id", "title", "owner", "status", "verdict", "last step done", "updated"):
            table.add_column(col, overflow="fold")
        for c in found:
            table.add_row(*map(shown, (c["id"], c["title"], c["owner"], c["status"], c["verdict"],
                                       c["last_step_done"], f"{c['updated_at']:%Y-%m-%d %H:%M}")))
        Console().print(table)

    @change_group.command("show")
    @click.argument("change_id")
    @json_option
    @click.pass_obj
    def show_cmd(state, change_id: str, as_json: bool) -> None:
        """One change with its timeline of steps."""
        q = for_schema(state.schema)
        with connect(state) as conn:
            record.sync_with_jobs(conn, q, change_id)
            found = record.get(conn, q, change_id)
        if as_json:
            echo_json(found)
            return
        safe = {k: clean(v) for k, v in found.items() if isinstance(v, str)}
        click.echo(f"{safe['id']}: {safe['title']}\nowner: {safe['owner']}\nstatus: {safe['status']}"
                   + (f" (verdict: {safe['verdict']})" if found["verdict"] else "")
                   + f"\nfile: {safe['file_path']}\nchange: {safe['statement']}\nrollback: {safe.get('rollback') or '-'}")
        table = Table(box=None, header_style="bold")
        for col in ("step", "status", "started", "finished", "job", "command", "summary"):
            table.add_column(col, overflow="fold")
        for s in found["steps"]:
            table.add_row(*map(shown, (s["step"], s["status"], f"{s['started_at']:%Y-%m-%d %H:%M:%S}",
                                       f"{s['finished_at']:%H:%M:%S}" if s["finished_at"] else "", s["job_id"],
                                       s["command"], s["summary"])))
        Console().print(table)
        for s in found["steps"]:  # a migration: each statement of its apply and rollback steps
            for st in (s["details"] or {}).get("statements", []) if s["step"] in ("apply", "rollback") else ():
                click.echo(clean(f"  {s['step']} step {s['id']}, statement {st['index']}/{st['of']} (line {st['line']}): "
                                 f"{st['status']} in {st.get('seconds', 0):.3f}s, {st['attempts']} attempt(s)"
                                 + (f", {st['lock_timeouts']} lock timeout(s)" if st["lock_timeouts"] else "")
                                 + (f": {st['error']}" if st.get("error") else "")))
