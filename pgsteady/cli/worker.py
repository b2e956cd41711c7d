"""`pgsteady worker`: run jobs until stopped."""

from __future__ import annotations

import logging
import os
import sys
import threading

import click

import psycopg

from ..app import App
from ..database import scrub
from ..errors import PgsteadyError
from ..monitoring import logs
from ..worker import run_worker

log = logging.getLogger("pgsteady.worker")


class WorkerDied(PgsteadyError):
    """The worker stopped because of an error it could not recover from."""


def register(cli: click.Group) -> None:
    @cli.command("worker")
    @click.option("--queues", metavar="A,B", help="Comma-separated queues to take jobs from [default: all].")
    @click.option("--concurrency", type=click.IntRange(1, 10_000), default=10, show_default=True,
                  help="Jobs run at once by this process.")
    @click.option("--lease", type=click.FloatRange(1), default=30.0, show_default=True,
                  help="Seconds a claim lasts without a heartbeat; a dead worker's jobs are rescued after this.")
    @click.option("--grace", type=click.FloatRange(0), default=30.0, show_default=True,
                  help="Seconds running jobs get to finish after SIGTERM/SIGINT before they are handed back.")
    @click.option("--poll", "poll_interval", type=click.FloatRange(0.05), default=1.0, show_default=True,
                  help="Seconds between polls when no notification arrives.")
    @click.option("--listen-dsn", envvar="PGSTEADY_LISTEN_DSN", metavar="DSN",
                  help="A direct DSN for LISTEN when --dsn goes through a transaction pooler [env PGSTEADY_LISTEN_DSN].")
    @click.option("--until-idle", is_flag=True, help="Exit once no job is waiting and none is running.")
    @click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
    @click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True,
                  help="json: one object per line, with job id, task, attempt and release on every line a job writes.")
    @click.pass_obj
    def worker_cmd(state, queues, concurrency, lease, grace, poll_interval, listen_dsn, until_idle, verbose,
                   log_format) -> None:
        """Run jobs of your App's tasks (needs --app or PGSTEADY_APP, except
        with --queues maintenance, which runs only pgsteady's own index builds).

        Claims jobs in batches with FOR UPDATE SKIP LOCKED, wakes on
        LISTEN/NOTIFY, renews its leases by heartbeat and rescues jobs whose
        worker died. The first SIGTERM/SIGINT stops claiming and lets running
        jobs finish within --grace, then hands the rest back without charging
        an attempt; a second signal stops at once.
        """
        logs.configure(log_format, [logging.WARNING, logging.INFO, logging.DEBUG][min(verbose + 1, 2)])
        qs = [q.strip() for q in queues.split(",") if q.strip()] if queues else None
        if state.app(required=False) is None and qs == ["maintenance"]:
            # Only pgsteady's own tasks (index builds) run there: no App needed.
            app = App(dsn=state.dsn, schema=state.schema_option or "pgsteady")
        else:
            app = state.app()
        from ..changes.tasks import register, serves_builds  # the CLI includes the change workflow; App does not

        if serves_builds(qs):
            register(app)
        try:
            stats = run_worker(app, queues=qs, concurrency=concurrency, lease=lease, grace=grace,
                               poll_interval=poll_interval, listen_dsn=listen_dsn, until_idle=until_idle,
                               handle_signals=True)
        except (PgsteadyError, KeyboardInterrupt):
            raise
        except Exception as exc:
            # One line for the operator (cause, never a password); the traceback goes
            # to the log at debug level (-vv) and with --debug.
            log.debug("the worker died", exc_info=True)
            what = scrub(str(exc)).strip().splitlines()
            cause = f"{type(exc).__name__}: {what[0]}" if what else type(exc).__name__
            hint = getattr(getattr(exc, "diag", None), "message_hint", None) if isinstance(exc, psycopg.Error) else None
            raise WorkerDied(f"the worker stopped: {cause}" + (f" (hint: {hint})" if hint else "")
                             + "; run with -vv or --debug for the traceback") from exc
        click.echo(f"worker stopped: {stats.succeeded} succeeded, {stats.retried} retried, {stats.failed} failed, "
                   f"{stats.handed_back} handed back, {stats.rejected} late writes rejected", err=True)
        # Threads still running sync tasks were handed back; do not wait for them.
        if threading.active_count() > 1:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(0)
