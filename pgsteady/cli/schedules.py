"""`pgsteady schedules` and `pgsteady queues`: cron schedules and queue controls."""

from __future__ import annotations

import difflib

import click
from rich.console import Console
from rich.table import Table

from .. import notifications
from ..errors import ConfigError
from ..jobs import actor
from ..queries import for_schema
from .base import echo_json, json_option
from .jobs import _ago, _conn


def _unknown_schedule(conn, q, name: str) -> ConfigError:
    names = [r[0] for r in conn.execute(q.list_schedules, {}).fetchall()]
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"did you mean {close[0]!r}?" if close else (
        f"known: {', '.join(names)}" if names else "no schedules yet (a worker records them when it starts)")
    return ConfigError(f"no schedule named {name!r}; {hint}")


def _table(columns: list[str], rows: list[list]) -> None:
    table = Table(box=None, header_style="bold")
    for col in columns:
        table.add_column(col, overflow="fold")
    for row in rows:
        table.add_row(*["" if v is None else str(v) for v in row])
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
        with _conn(state) as conn:
            cur = conn.execute(for_schema(state.schema).list_schedules, {})
            rows = [dict(zip([c.name for c in cur.description], r)) for r in cur.fetchall()]
        if as_json:
            echo_json(rows)
            return
        _table(["name", "cron", "tz", "task", "state", "next run", "last run", "last outcome"],
               [[r["name"], r["cron"], r["tz"], r["task"], "paused" if r["paused"] else "active",
                 _ago(r["next_run_at"]), _ago(r["last_run_at"]), r["last_outcome"]] for r in rows])

    def set_paused(state, name: str, paused: bool) -> None:
        q = for_schema(state.schema)
        with _conn(state) as conn:
            if not conn.execute(q.set_schedule_paused, dict(name=name, paused=paused)).fetchone():
                raise _unknown_schedule(conn, q, name)
        click.echo(f"schedule {name} {'paused' if paused else 'resumed'}")

    @schedules_group.command("pause")
    @click.argument("name")
    @click.pass_obj
    def pause_cmd(state, name) -> None:
        """Stop enqueueing NAME's cron events until resumed."""
        set_paused(state, name, True)

    @schedules_group.command("resume")
    @click.argument("name")
    @click.pass_obj
    def resume_cmd(state, name) -> None:
        """Enqueue NAME's cron events again (times missed while paused follow its on_missed)."""
        set_paused(state, name, False)

    @schedules_group.command("run")
    @click.argument("name")
    @click.pass_obj
    def run_cmd(state, name) -> None:
        """Enqueue one run of NAME now, outside its schedule."""
        q = for_schema(state.schema)
        with _conn(state) as conn:
            row = conn.execute(q.run_schedule_now, dict(name=name, actor=actor())).fetchone()
            if row is None:
                raise _unknown_schedule(conn, q, name)
        click.echo(f"enqueued job {row[0]} for schedule {name}")

    @schedules_group.command("remove")
    @click.argument("name")
    @click.pass_obj
    def remove_cmd(state, name) -> None:
        """Forget NAME (after you deleted it from the code); jobs it enqueued stay.
        A worker whose App still defines it records it again when it starts."""
        q = for_schema(state.schema)
        with _conn(state) as conn:
            if not conn.execute(q.delete_schedule, dict(name=name)).fetchone():
                raise _unknown_schedule(conn, q, name)
        click.echo(f"schedule {name} removed")

    @cli.group("queues")
    def queues_group() -> None:
        """Pause, resume and limit queues across every worker."""

    @queues_group.command("list")
    @json_option
    @click.pass_obj
    def queues_list(state, as_json) -> None:
        """Queues with waiting and running counts, pause state and limits."""
        with _conn(state) as conn:
            cur = conn.execute(for_schema(state.schema).list_queues, {})
            rows = [dict(zip([c.name for c in cur.description], r)) for r in cur.fetchall()]
        if as_json:
            echo_json(rows)
            return
        _table(["queue", "state", "waiting", "running", "max running", "max per second"],
               [[r["queue"], "paused" if r["paused"] else "active", r["waiting"], r["running"],
                 r["max_running"] or "-", r["max_per_second"] or "-"] for r in rows])

    def queue_paused(state, queue: str, paused: bool) -> None:
        with _conn(state) as conn:
            conn.execute(for_schema(state.schema).set_queue_paused,
                         dict(queue=queue, paused=paused, **notifications.encode(state.schema, notifications.QueuesChanged())))
        click.echo(f"queue {queue} {'paused: running jobs finish, no new ones start' if paused else 'resumed'}")

    @queues_group.command("pause")
    @click.argument("queue")
    @click.pass_obj
    def queues_pause(state, queue) -> None:
        """No worker starts QUEUE's jobs until resumed; running ones finish."""
        queue_paused(state, queue, True)

    @queues_group.command("resume")
    @click.argument("queue")
    @click.pass_obj
    def queues_resume(state, queue) -> None:
        """Let workers start QUEUE's jobs again."""
        queue_paused(state, queue, False)

    @queues_group.command("limit")
    @click.argument("queue")
    @click.option("--max-running", type=click.IntRange(1), help="At most this many of QUEUE's jobs at once, fleet-wide.")
    @click.option("--max-per-second", type=click.IntRange(1), help="At most this many of QUEUE's jobs started per second.")
    @click.option("--clear", is_flag=True, help="Remove both limits.")
    @click.pass_obj
    def queues_limit(state, queue, max_running, max_per_second, clear) -> None:
        """Set QUEUE's fleet-wide limits (a limit not given is removed), or --clear them.

        Enforced in the claim under the queue's row lock, so adding workers never breaks them.
        """
        if clear and (max_running or max_per_second):
            raise click.UsageError("--clear cannot be combined with --max-running/--max-per-second")
        if not clear and max_running is None and max_per_second is None:
            raise click.UsageError("give --max-running and/or --max-per-second, or --clear")
        with _conn(state) as conn:
            conn.execute(for_schema(state.schema).set_queue_limits, dict(
                queue=queue, max_running=max_running, max_per_second=max_per_second,
                **notifications.encode(state.schema, notifications.QueuesChanged())))
        click.echo(f"queue {queue}: " + ("no limits" if clear else
                   f"max running {max_running or 'unlimited'}, max per second {max_per_second or 'unlimited'}"))
