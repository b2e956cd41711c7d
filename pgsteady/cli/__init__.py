"""The `pgsteady` command line.

One module per command group; this module only builds the root group, holds
the options every command shares (also accepted after the command name), and
turns every error into one line on stderr and a non-zero exit code: a
PgsteadyError keeps its own message and code, a database error or anything
unexpected becomes one line with exit code 2 (the traceback only with
--debug or PGSTEADY_DEBUG=1). Every line goes through the DSN redaction.
"""

from __future__ import annotations

import os
import sys
import traceback

import click
import psycopg
from click.core import ParameterSource

from ..database import scrub
from ..errors import PgsteadyError
from .base import State, clean, shared_options
from . import cache, changes, dashboard, db, demo, deploy, jobs, metrics, migrate, schedules, security, status, worker

try:  # index health lives beside the job core and may be built separately
    from . import indexes
except ImportError:  # pragma: no cover
    indexes = None


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--dsn", envvar="PGSTEADY_DSN", metavar="DSN",
              help="PostgreSQL to use [env PGSTEADY_DSN]; default: the embedded server. Keep passwords out of "
                   "it (PGPASSWORD, a service file or ~/.pgpass): a command line is visible to every local user.")
@click.option("--app", "app_path", envvar="PGSTEADY_APP", metavar="MODULE:ATTR", help="Where your App lives [env PGSTEADY_APP].")
@click.option("--read-dsn", envvar="PGSTEADY_READ_DSN", metavar="DSN",
              help="A replica (or any read-only DSN) for status, jobs list/show and indexes check; "
                   "nothing is written there [env PGSTEADY_READ_DSN].")
@click.option("--schema", envvar="PGSTEADY_SCHEMA", metavar="NAME", help="Schema that holds pgsteady's tables [env PGSTEADY_SCHEMA; default: the App's, else pgsteady].")
@click.option("--debug", is_flag=True, envvar="PGSTEADY_DEBUG",
              help="Print the traceback of an unexpected error [env PGSTEADY_DEBUG].")
@click.version_option(package_name="pgsteady")
@click.pass_context
def cli(ctx: click.Context, dsn: str | None, app_path: str | None, read_dsn: str | None, schema: str | None,
        debug: bool) -> None:
    """Calm background jobs and safe index changes for PostgreSQL.

    With no --dsn and no PGSTEADY_DSN, pgsteady starts an embedded PostgreSQL
    in PGSTEADY_HOME on first use (see `pgsteady db --help`). --dsn, --app and
    --schema may also follow the command name.
    """
    ctx.obj = State(dsn=None, app_path=app_path, schema_option=schema, read_dsn=read_dsn)
    ctx.obj.set_option("dsn", dsn, from_command_line=ctx.get_parameter_source("dsn") == ParameterSource.COMMANDLINE)


for module in (db, demo, jobs, migrate, schedules, worker, status, deploy, metrics, dashboard, indexes, changes, security, cache):
    if module is not None:
        module.register(cli)


def _add_shared_options(group: click.Group) -> None:
    for command in group.commands.values():
        shared_options(command)
        if isinstance(command, click.Group):
            _add_shared_options(command)


_add_shared_options(cli)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    try:
        # Outside standalone mode click returns ctx.exit(code) instead of exiting.
        rv = cli.main(args=args, prog_name="pgsteady", standalone_mode=False)
        sys.exit(rv if isinstance(rv, int) else 0)
    except PgsteadyError as exc:
        if exc.__cause__ is not None:
            _debug_traceback(args)
        _error(str(exc), exc.exit_code)
    except click.exceptions.Abort:
        click.echo("pgsteady: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except psycopg.Error as exc:
        # A database refusal the command did not expect (a missing privilege,
        # a lock timeout): PostgreSQL's first line says what, the hint how.
        what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = getattr(getattr(exc, "diag", None), "message_hint", None)
        _debug_traceback(args)
        _error(f"the database refused: {what}" + (f" (hint: {hint})" if hint else ""), 2)
    except Exception as exc:  # a defect of ours: still one line, and the way to see more
        _debug_traceback(args)
        _error(f"unexpected {type(exc).__name__}: {str(exc).strip() or '(no message)'}; "
               "run again with --debug for the traceback, and please report it", 2)


def _debug_traceback(args: list[str]) -> None:
    if "--debug" in args or os.environ.get("PGSTEADY_DEBUG", "").lower() in ("1", "true", "yes"):
        click.echo(scrub(traceback.format_exc()), err=True, nl=False)


def _error(message: str, code: int) -> None:
    line = clean(" ".join(scrub(message).split("\n")))
    click.echo(f"pgsteady: error: {line}", err=True)
    sys.exit(code)
