"""`pgsteady schedules` and `pgsteady queues`: cron schedules and queue controls.

The handlers only parse, call the domain modules (pgsteady/schedule_admin.py,
pgsteady/queues.py) and print; no SQL here.
"""

from __future__ import annotations

import dataclasses

import click
from rich.console import Console
from rich.table import Table

from .. import queues, schedule_admin
from ..queries import for_schema
from .base import cell, connect, echo_json, json_option
from .jobs import _ago


def _table(columns: list[str], rows: list[list]) -> None:
    table = Table(box=None, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*[cell(v) for v in row])  # names and outcomes come from the database
    Console().print(table)


def register(cli: click.Group) -> None:
    @cli.group("schedules")
    def schedules_group() -> None:
        """Cron schedules (defined with @app.periodic; recorded by workers when they start)."""

    @schedules_group.command("list")
    @json_option
    @click.pass_obj
    def list_cmd(state, as_json) -> None:
        """Every schedule with its next run, last run and last outcome."""
        with connect(state) as conn:
            rows = schedule_admin.list_schedules(conn, for_schema(state.schema))
        if as_json:
            echo_json([dataclasses.asdict(r) for r in rows])
            return
        _table(["name", "cron", "tz", "task", "state", "next run", "last run", "last outcome"],
               [[r.name, r.cron, r.tz, r.task, "paused" if r.paused else "active",
                 _ago(r.next_run_at) or "-", _ago(r.last_run_at) or "never", r.last_outcome] for r in rows])

    def admin(state, action, name: str, done: str) -> None:
        with connect(state) as conn:
            action(conn, for_schema(state.schema), name)
        click.echo(done)

    @schedules_group.command("pause")
    @click.argument("name")
    @click.pass_obj
    def pause_cmd(state, name) -> None:
        """Stop enqueueing NAME's cron events until resumed."""
        admin(state, schedule_admin.pause, name, f"schedule {name} paused")

    @schedules_group.command("resume")
    @click.argument("name")
    @click.pass_obj
    def resume_cmd(state, name) -> None:
        """Enqueue NAME's cron events again (times missed while paused follow its on_missed)."""
        admin(state, schedule_admin.resume, name, f"schedule {name} resumed")

    @schedules_group.command("run")
    @click.argument("name")
    @click.pass_obj
    def run_cmd(state, name) -> None:
        """Enqueue one run of NAME now, outside its schedule."""
        with connect(state) as conn:
            job_id = schedule_admin.run_now(conn, for_schema(state.schema), name)
        click.echo(f"enqueued job {job_id} for schedule {name}")

    @schedules_group.command("remove")
    @click.argument("name")
    @click.pass_obj
    def remove_cmd(state, name) -> None:
        """Forget NAME (after you deleted it from the code); jobs it enqueued stay.
        A worker whose App still defines it records it again when it starts."""
        admin(state, schedule_admin.remove, name, f"schedule {name} removed")

    @cli.group("queues")
    def queues_group() -> None:
        """Pause, resume and limit queues across every worker."""

    @queues_group.command("list")
    @json_option
    @click.pass_obj
    def queues_list(state, as_json) -> None:
        """Queues with waiting and running counts, pause state and limits."""
        with connect(state) as conn:
            rows = queues.list_queues(conn, for_schema(state.schema))
        if as_json:
            echo_json([dataclasses.asdict(r) for r in rows])
            return
        _table(["queue", "state", "waiting", "scheduled", "running", "max running", "max per second"],
               [[r.queue, "paused" if r.paused else "active", r.waiting, r.scheduled, r.running,
                 r.max_running or "-", r.max_per_second or "-"] for r in rows])

    @queues_group.command("pause")
    @click.argument("queue")
    @click.pass_obj
    def queues_pause(state, queue) -> None:
        """No worker starts QUEUE's jobs until resumed; running ones finish."""
        admin(state, queues.pause, queue, f"queue {queue} paused: running jobs finish, no new ones start")

    @queues_group.command("resume")
    @click.argument("queue")
    @click.pass_obj
    def queues_resume(state, queue) -> None:
        """Let workers start QUEUE's jobs again."""
        admin(state, queues.resume, queue, f"queue {queue} resumed")

    @queues_group.command("limit")
    @click.argument("queue")
    @click.option("--max-running", type=int, help="At most this many of QUEUE's jobs at once, fleet-wide.")
    @click.option("--max-per-second", type=int, help="At most this many of QUEUE's jobs started per second.")
    @click.option("--clear", is_flag=True, help="Remove both limits.")
    @click.pass_obj
    def queues_limit(state, queue, max_running, max_per_second, clear) -> None:
        """Set QUEUE's fleet-wide limits (a limit not given is removed), or --clear them.

        Enforced in the claim under the queue's row lock, so adding workers never breaks them.
        """
        if clear and (max_running is not None or max_per_second is not None):
            raise click.UsageError("--clear cannot be combined with --max-running/--max-per-second")
        if not clear and max_running is None and max_per_second is None:
            raise click.UsageError("give --max-running and/or --max-per-second, or --clear")
        queues.validate_limits(max_running, max_per_second)  # before connecting: bad input is exit 2 at once
        with connect(state) as conn:
            queues.set_limits(conn, for_schema(state.schema), queue, max_running=max_running,
                              max_per_second=max_per_second)
        click.echo(f"queue {queue}: " + ("no limits" if clear else
                   f"max running {max_running or 'unlimited'}, max per second {max_per_second or 'unlimited'}"))
