"""The `pgsteady` command line.

One module per command group; this module only builds the root group, holds
the options every command shares, and turns a PgsteadyError into one line on
stderr and a non-zero exit code.
"""

from __future__ import annotations

import sys

import click

from ..errors import PgsteadyError
from .base import State
from . import cache, changes, dashboard, db, demo, deploy, jobs, metrics, migrate, schedules, security, status, worker

try:  # index health lives beside the job core and may be built separately
    from . import indexes
except ImportError:  # pragma: no cover
    indexes = None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--dsn", envvar="PGSTEADY_DSN", metavar="DSN", help="PostgreSQL to use [env PGSTEADY_DSN]; default: the embedded server.")
@click.option("--app", "app_path", envvar="PGSTEADY_APP", metavar="MODULE:ATTR", help="Where your App lives [env PGSTEADY_APP].")
@click.option("--read-dsn", envvar="PGSTEADY_READ_DSN", metavar="DSN",
              help="A replica (or any read-only DSN) for status, jobs list/show and indexes check; "
                   "nothing is written there [env PGSTEADY_READ_DSN].")
@click.option("--schema", envvar="PGSTEADY_SCHEMA", metavar="NAME", help="Schema that holds pgsteady's tables [env PGSTEADY_SCHEMA; default: the App's, else pgsteady].")
@click.version_option(package_name="pgsteady")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, app_path: str | None, read_dsn: str | None, schema: str | None) -> None:
    """Calm background jobs and safe index changes for PostgreSQL.

    With no --dsn and no PGSTEADY_DSN, pgsteady starts an embedded PostgreSQL
    in PGSTEADY_HOME on first use (see `pgsteady db --help`).
    """
    ctx.obj = State(dsn=dsn, app_path=app_path, schema_option=schema, read_dsn=read_dsn)


for module in (db, demo, jobs, migrate, schedules, worker, status, deploy, metrics, dashboard, indexes, changes, security, cache):
    if module is not None:
        module.register(cli)


def main(argv: list[str] | None = None) -> None:
    try:
        # Outside standalone mode click returns ctx.exit(code) instead of exiting.
        rv = cli.main(args=argv, prog_name="pgsteady", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except PgsteadyError as exc:
        click.echo(f"pgsteady: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("pgsteady: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
