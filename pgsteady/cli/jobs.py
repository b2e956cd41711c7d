"""`pgsteady enqueue` and `pgsteady jobs list|show|retry|cancel`."""

from __future__ import annotations

import json
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .. import jobs as admin
from ..database import connect
from ..errors import InvalidPayload
from ..imports import enqueue_file
from ..migrations import check_current
from ..queries import for_schema
from .base import echo_json, json_option, parse_time


def _conn(state, *, reading: bool = False):
    """The primary; with ``reading``, the --read-dsn when one is given."""
    dsn, read_only = state.reading_dsn() if reading else (state.resolved_dsn(), False)
    conn = connect(dsn, autocommit=True, read_only=read_only)
    check_current(conn, state.schema)
    return conn


def _ago(value) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _enqueue_file(state, path: Path, all_or_nothing: bool, as_json: bool) -> None:
    app = state.app()
    with path.open(encoding="utf-8") as f:
        lines = sum(1 for line in f if line.strip())
    with Progress(TextColumn("enqueueing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=as_json) as progress:
        bar = progress.add_task("enqueue", total=lines)
        result = enqueue_file(app, path, all_or_nothing=all_or_nothing,
                              on_progress=lambda n: progress.update(bar, completed=n))
    if as_json:
        echo_json({"new": result.new, "existing": result.existing, "committed": result.committed,
                   "bad": [{"line": n, "error": e} for n, e in result.bad]})
    else:
        for n, error in result.bad[:20]:
            click.echo(f"{path}:{n}: {error}", err=True)
        if len(result.bad) > 20:
            click.echo(f"... and {len(result.bad) - 20} more bad lines", err=True)
        if result.committed:
            click.echo(f"{result.new:,} new, {result.existing:,} already existed, {len(result.bad):,} bad lines skipped")
        else:
            click.echo(f"nothing enqueued: {len(result.bad):,} bad lines and --all-or-nothing", err=True)
    if result.bad:
        raise SystemExit(1 if result.committed else 2)


def register(cli: click.Group) -> None:
    @cli.command("enqueue")
    @click.argument("task", required=False)
    @click.option("--args", "args_json", default="{}", show_default=True, metavar="JSON", help="The task's arguments, a JSON object.")
    @click.option("--key", help="Idempotency key: no new job while a job with this key is waiting, running or recently succeeded.")
    @click.option("--at", "at", metavar="TIME", help="Run at this time (ISO 8601) or after this delay (10m, 2h).")
    @click.option("--queue", help="Queue to use instead of the task's.")
    @click.option("--priority", type=int, help="Lower runs first (default: the task's).")
    @click.option("--from-file", "from_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
                  help="Enqueue one job per line of this JSONL file instead of TASK.")
    @click.option("--all-or-nothing", is_flag=True, help="With --from-file: enqueue nothing if any line is bad.")
    @json_option
    @click.pass_obj
    def enqueue_cmd(state, task, args_json, key, at, queue, priority, from_file, all_or_nothing, as_json) -> None:
        """Enqueue one job of TASK, or many from a file (needs --app to check task names).

        \b
        --from-file: each line is a JSON object like
          {"task": "import_post", "args": {"post_id": 1}, "key": "post:1",
           "queue": "imports", "priority": 0, "run_at": "2026-11-28T09:00:00Z"}
        (only "task" is required). Jobs go in bulk; with keys, running the same
        file twice enqueues nothing the second time. Bad lines are reported by
        line number. By default the good lines are still enqueued and the exit
        code is 1; with --all-or-nothing nothing is enqueued and it is 2.
        """
        if from_file is not None:
            if task or key or at or queue or priority is not None or args_json != "{}":
                raise click.UsageError("--from-file takes the task and options from each line; give no TASK or job options")
            _enqueue_file(state, from_file, all_or_nothing, as_json)
            return
        if task is None:
            raise click.UsageError("give TASK (or --from-file FILE)")
        try:
            args = json.loads(args_json)
        except json.JSONDecodeError as exc:
            raise InvalidPayload(f"--args is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); pass an object like '{{\"user_id\": 7}}'") from None
        app = state.app()
        ref = app.enqueue(task, args, key=key, queue=queue, priority=priority,
                          run_at=parse_time(at, past=False) if at else None)
        if as_json:
            echo_json({"id": ref.id, "created": ref.created, "key": ref.key})
        elif ref.created:
            click.echo(f"enqueued job {ref.id} ({task})")
        else:
            click.echo(f"job {ref.id} already holds key {key!r}; nothing enqueued")

    @cli.group("jobs")
    def jobs_group() -> None:
        """Look at jobs and act on them by hand (every action is recorded in the job's history)."""

    @jobs_group.command("list")
    @click.option("--state", "state_filter", type=click.Choice(admin.STATES), help="Only jobs in this state.")
    @click.option("--queue", help="Only jobs of this queue.")
    @click.option("--task", help="Only jobs of this task.")
    @click.option("--since", metavar="TIME", help="Only jobs created since TIME (ISO 8601, or 10m, 2h, 1d ago).")
    @click.option("--limit", type=click.IntRange(1, 100_000), default=50, show_default=True)
    @json_option
    @click.pass_obj
    def list_cmd(state, state_filter, queue, task, since, limit, as_json) -> None:
        """The newest jobs first."""
        with _conn(state, reading=True) as conn:
            rows = admin.list_jobs(conn, for_schema(state.schema), state=state_filter,
                                   queue=queue, task=task, since=parse_time(since, past=True) if since else None,
                                   limit=limit)
        if as_json:
            echo_json(rows)
            return
        table = Table(box=None, header_style="bold")
        for col in ("id", "task", "queue", "state", "attempt", "created", "finished", "last error"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(str(r["id"]), r["task"], r["queue"], r["state"], f"{r['attempt']}/{r['max_attempts']}",
                          _ago(r["created_at"]), _ago(r["finished_at"]), (r["last_error"] or "")[:80])
        Console().print(table)
        click.echo(f"{len(rows)} job(s)")

    @jobs_group.command("show")
    @click.argument("job_id", type=int)
    @json_option
    @click.pass_obj
    def show_cmd(state, job_id, as_json) -> None:
        """One job with its whole event history."""
        with _conn(state, reading=True) as conn:
            job = admin.get_job(conn, for_schema(state.schema), job_id)
        if as_json:
            echo_json(job)
            return
        console = Console()
        for field in ("id", "task", "queue", "state", "attempt", "max_attempts", "priority", "key", "run_at",
                      "created_at", "started_at", "finished_at", "worker_id", "release"):
            console.print(f"[bold]{field:>13}[/bold]  {job[field] if job[field] is not None else ''}")
        console.print(f"[bold]{'args':>13}[/bold]  ", end="")
        console.print(json.dumps(job["args"])[:500], markup=False, highlight=False)
        if job["errors"]:
            console.print("[bold]errors[/bold]")
            for e in job["errors"]:
                console.print(f"  attempt {e.get('attempt')}: {e.get('error')}", markup=False)
        console.print("[bold]history[/bold]")
        if not job["events"]:
            console.print("  (no events: the success path records none)")
        for ev in job["events"]:
            console.print(f"  {_ago(ev['created_at'])}  {ev['kind']:<20} attempt {ev['attempt'] or '-'}  "
                          f"{ev['message'] or ''}  [{ev['worker_id'] or ''}]", markup=False)

    @jobs_group.command("retry")
    @click.argument("job_id", type=int)
    @click.pass_obj
    def retry_cmd(state, job_id) -> None:
        """Run a failed or cancelled job again now, with one more attempt allowed."""
        with _conn(state) as conn:
            admin.retry(conn, for_schema(state.schema), job_id)
        click.echo(f"job {job_id} will run again")

    @jobs_group.command("cancel")
    @click.argument("job_id", type=int)
    @click.pass_obj
    def cancel_cmd(state, job_id) -> None:
        """Cancel a waiting job, or ask a running job's worker to stop it."""
        with _conn(state) as conn:
            outcome = admin.cancel(conn, for_schema(state.schema), job_id)
        click.echo(f"job {job_id}: {outcome}")
