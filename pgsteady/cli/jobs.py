"""`pgsteady enqueue` and `pgsteady jobs list|show|retry|cancel`."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from .. import jobs as admin
from ..errors import InvalidPayload
from ..imports import FileRefused, enqueue_file
from ..queries import for_schema
from ..security.settings import mask_secrets
from .base import answer_no, cell, clean, connect, echo_json, json_option, parse_time


def _ago(value) -> str:
    return "" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def _source(path: str):
    """The file's name for messages, and its lines: a regular file is read twice
    (check, then enqueue); stdin, a pipe or a FIFO only once, kept in memory."""
    if path == "-":
        lines = sys.stdin.buffer.readlines()
        return "<stdin>", lambda: lines
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
        if not regular:
            with open(path, "rb") as f:
                lines = f.readlines()
    except OSError as exc:
        raise click.BadParameter(f"cannot read {path}: {exc.strerror}", param_hint="--from-file") from None
    return path, (Path(path) if regular else (lambda: lines))


def _enqueue_file(state, path: str, all_or_nothing: bool, as_json: bool) -> None:
    app = state.app()
    name, source = _source(path)
    with Progress(TextColumn("enqueueing"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), disable=as_json) as progress:
        bar = progress.add_task("enqueue", total=None)
        try:
            result = enqueue_file(app, source, all_or_nothing=all_or_nothing,
                                  on_progress=lambda n: progress.update(bar, completed=n))
        except FileRefused as exc:
            raise FileRefused(f"{name}: {exc}") from None
    if as_json:
        echo_json({"new": result.new, "existing": result.existing, "committed": result.committed,
                   "bad": [{"line": n, "error": e} for n, e in result.bad]})
    else:
        for n, error in result.bad[:20]:
            click.echo(f"{clean(name)}:{n}: {clean(error, newlines=False)}", err=True)
        if len(result.bad) > 20:
            click.echo(f"... and {len(result.bad) - 20:,} more bad lines", err=True)
        if not result.lines:
            click.echo(f"nothing enqueued: {clean(name)} has no lines", err=True)
        elif result.committed:
            click.echo(f"{result.new:,} new, {result.existing:,} already existed, {len(result.bad):,} bad lines skipped")
        else:
            click.echo(f"nothing enqueued: {len(result.bad):,} bad lines and --all-or-nothing", err=True)
    if result.bad and not result.committed:
        raise click.exceptions.Exit(2)  # bad input, already reported line by line
    if result.bad or not result.lines:
        answer_no()


def register(cli: click.Group) -> None:
    @cli.command("enqueue")
    @click.argument("task", required=False)
    @click.option("--args", "args_json", default="{}", show_default=True, metavar="JSON", help="The task's arguments, a JSON object.")
    @click.option("--key", help="Idempotency key: no new job while a job with this key is waiting, running or recently succeeded.")
    @click.option("--at", "at", metavar="TIME", help="Run at this time (ISO 8601) or after this delay (10m, 2h).")
    @click.option("--queue", help="Queue to use instead of the task's.")
    @click.option("--priority", type=int, help="Lower runs first (default: the task's).")
    @click.option("--from-file", "from_file", type=click.Path(exists=True, dir_okay=False, allow_dash=True),
                  help="Enqueue one job per line of this JSONL file instead of TASK (- for stdin).")
    @click.option("--all-or-nothing", is_flag=True,
                  help="With --from-file: enqueue nothing if any line is bad, and write in one transaction.")
    @json_option
    @click.pass_obj
    def enqueue_cmd(state, task, args_json, key, at, queue, priority, from_file, all_or_nothing, as_json) -> None:
        """Enqueue one job of TASK, or many from a file (needs --app to check task names).

        TASK is the task's name: module.function (for example
        myproject.jobs.send_digest) unless the task was given name=...; a
        wrong name is refused with the closest one.

        \b
        --from-file: each line is a JSON object like
          {"task": "myproject.jobs.import_post", "args": {"post_id": 1},
           "key": "post:1", "queue": "imports", "priority": 0,
           "run_at": "2026-11-28T09:00:00Z"}
        (only "task" is required). Every line is checked before anything is
        written; bad lines are reported by line number (FILE:LINE: reason). By default
        the good lines are still enqueued (committed every 5,000) and the exit
        code is 1; with --all-or-nothing nothing is enqueued if any line is bad
        (exit 2), and the rest is written in one transaction. Jobs go in bulk;
        with keys, running the same file twice enqueues nothing the second time.
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
        except RecursionError:
            raise InvalidPayload("--args is nested too deeply to read; pass a flatter JSON object") from None
        app = state.app()
        ref = app.enqueue(task, args, key=key, queue=queue, priority=priority,
                          run_at=parse_time(at, past=False) if at else None)
        if as_json:
            echo_json({"id": ref.id, "created": ref.created, "key": ref.key})
        elif ref.created:
            click.echo(f"enqueued job {ref.id} ({clean(task)})")
        else:
            click.echo(f"job {ref.id} already holds key {clean(repr(key))}; nothing enqueued")

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
        with connect(state, reading=True) as conn:
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
            table.add_row(str(r["id"]), cell(r["task"]), cell(r["queue"]), r["state"],
                          f"{r['attempt']}/{r['max_attempts']}", _ago(r["created_at"]), _ago(r["finished_at"]),
                          cell(r["last_error"], 80))
        Console(highlight=False).print(table)
        click.echo(f"{len(rows)} job(s)")

    @jobs_group.command("show")
    @click.argument("job_id", type=int)
    @json_option
    @click.pass_obj
    def show_cmd(state, job_id, as_json) -> None:
        """One job with its whole event history."""
        with connect(state, reading=True) as conn:
            job = admin.get_job(conn, for_schema(state.schema), job_id)
        if as_json:
            echo_json({**job, "args": mask_secrets(job["args"]),
                       "events": [{**ev, "data": mask_secrets(ev["data"])} for ev in job["events"]]})
            return
        console = Console(highlight=False, soft_wrap=True)

        def line(label: str, value) -> None:
            console.print(Text.assemble((f"{label:>13}", "bold"), "  ", clean(value, newlines=False)))

        for field in ("id", "task", "queue", "state", "attempt", "max_attempts", "priority", "key", "run_at",
                      "created_at", "started_at", "finished_at", "worker_id", "release"):
            line(field, job[field])
        line("args", json.dumps(mask_secrets(job["args"]))[:500])
        if job["errors"]:
            console.print("[bold]errors[/bold]")
            for e in job["errors"]:
                console.print(Text(f"  attempt {e.get('attempt')}: {clean(e.get('error'), newlines=False)}"))
        console.print("[bold]history[/bold]")
        if not job["events"]:
            console.print("  (no events: the success path records none)")
        for ev in job["events"]:
            data = f"  {json.dumps(mask_secrets(ev['data']), default=str)[:300]}" if ev.get("data") else ""
            console.print(Text(f"  {_ago(ev['created_at'])}  {clean(ev['kind'])}  attempt {ev['attempt'] or '-'}  "
                               f"{clean(ev['message'], newlines=False)}{clean(data)}  [{clean(ev['worker_id'])}]"))

    @jobs_group.command("retry")
    @click.argument("job_id", type=int)
    @click.pass_obj
    def retry_cmd(state, job_id) -> None:
        """Run a failed or cancelled job again now, with one more attempt allowed."""
        with connect(state) as conn:
            admin.retry(conn, for_schema(state.schema), job_id)
        click.echo(f"job {job_id} will run again")

    @jobs_group.command("cancel")
    @click.argument("job_id", type=int)
    @click.pass_obj
    def cancel_cmd(state, job_id) -> None:
        """Cancel a waiting job, or ask a running job's worker to stop it."""
        with connect(state) as conn:
            outcome = admin.cancel(conn, for_schema(state.schema), job_id)
        click.echo(f"job {job_id}: {outcome}")
