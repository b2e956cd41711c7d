"""`pgsteady migrate`: create or upgrade the schema."""

from __future__ import annotations

import click

from ..database import describe
from ..migrations import latest_version, migrate
from .base import echo_json, json_option


def register(cli: click.Group) -> None:
    @cli.command("migrate")
    @json_option
    @click.pass_obj
    def migrate_cmd(state, as_json: bool) -> None:
        """Create the pgsteady schema, or apply the migrations it lacks.

        Safe to run again and from several processes at once: migrations are
        applied in one transaction under an advisory lock.
        """
        dsn = state.resolved_dsn()
        schema = state.schema
        applied = migrate(dsn, schema)
        if as_json:
            echo_json({"schema": schema, "applied": applied, "version": latest_version()})
        elif applied:
            click.echo(f"schema {schema!r} on {describe(dsn)}: applied migrations {', '.join(map(str, applied))}; now at version {latest_version()}")
        else:
            click.echo(f"schema {schema!r} on {describe(dsn)} is up to date (version {latest_version()})")
