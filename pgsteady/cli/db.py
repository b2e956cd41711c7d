"""`pgsteady db`: start, stop and inspect the embedded PostgreSQL."""

from __future__ import annotations

import click

from .. import embedded
from .base import answer_no, echo_json, json_option


def register(cli: click.Group) -> None:
    cli.add_command(db)


@click.group()
def db() -> None:
    """The embedded PostgreSQL, used when no --dsn / PGSTEADY_DSN is set.

    It lives in PGSTEADY_HOME (default: your user data folder, such as
    ~/.local/share/pgsteady; /var/lib/pgsteady when run as root), listens only
    on a unix socket in that folder (no TCP, no password) and runs as a
    background service: any command that needs the database starts it, and it
    keeps running until `pgsteady db stop`. As root, the server runs as the
    system user `pgsteady` (PGSTEADY_SERVER_USER), because PostgreSQL refuses
    root. Set PGSTEADY_PG_BIN to use server binaries already on the machine.

    Its URL connects as the ordinary role `pgsteady`, which owns the database
    but is no superuser; `db url --admin` prints the superuser's, for
    administration only.

    These commands act on the embedded server even when a DSN is configured.
    """


@db.command()
def start() -> None:
    """Start the embedded server (or find the one running) and print its URL."""
    url = embedded.ensure_running()
    info = embedded.status()
    click.echo(f"embedded PostgreSQL {info['version']} is running (pid {info['pid']}) in {info['data_dir']}")
    click.echo(url)


@db.command()
def stop() -> None:
    """Stop the embedded server; its data stays in PGSTEADY_HOME."""
    if embedded.stop():
        click.echo("stopped the embedded PostgreSQL")
    else:
        click.echo("the embedded PostgreSQL was not running")


@db.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show whether the embedded server runs; exit code 0 if it does, 1 if not."""
    info = embedded.status()
    if as_json:
        echo_json(info)
    else:
        state = f"running (pid {info['pid']})" if info["running"] else "stopped"
        click.echo(f"embedded PostgreSQL: {state}")
        for key in ("dsn", "data_dir", "log", "version", "server_user", "bin_dir"):
            click.echo(f"  {key + ':':<13}{info[key] if info[key] is not None else '-'}")
        if ctx.obj is not None and ctx.obj.dsn:
            click.echo("  note: a DSN is configured, so other commands use that server, not this one")
    if not info["running"]:
        answer_no()


@db.command()
@click.option("--admin", is_flag=True, help="The superuser's URL (postgres), for administration only.")
def url(admin: bool) -> None:
    """Print the embedded server's URL (without starting it), for psql or PGSTEADY_DSN."""
    click.echo(embedded.admin_dsn() if admin else embedded.dsn())
