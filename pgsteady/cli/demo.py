"""`pgsteady demo`: the field note's day, on the embedded PostgreSQL by default."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.console import Console

from .base import echo_json, json_option


def register(cli: click.Group) -> None:
    @cli.command("demo")
    @click.option("--quick", is_flag=True, help="A smaller day (100,000 page views, 4,000 posts): under 30 s, for CI.")
    @click.option("--dir", "folder", type=click.Path(file_okay=False, path_type=Path),
                  help="Where the feed, the worker logs, the change file and its note go "
                       "[default: PGSTEADY_HOME/demo].")
    @json_option
    @click.pass_obj
    def demo_cmd(state, quick, folder, as_json) -> None:
        """Walk a content site's day: an import killed halfway and resumed, a cron
        event and retries, the field note's index change from check to final
        note while writes go on, and the four questions of `status`.

        Uses the embedded PostgreSQL unless --dsn / PGSTEADY_DSN is set; its
        tables live in the demo_site schema, made afresh on every run. Every
        claim the demo makes is checked: it exits 0 only when all of them
        held, 1 otherwise.
        """
        from .. import demo

        console = Console(stderr=as_json, highlight=False)
        dsn = state.resolved_dsn()
        from ..database import describe

        console.print(f"[bold]pgsteady demo[/bold]{' --quick' if quick else ''}: a day on a content site behind a "
                      f"CDN, on {describe(dsn)}")
        day = demo.run(dsn=dsn, schema=state.schema, folder=folder, quick=quick, console=console)
        seconds = sum(s.seconds for s in day.steps)
        claims = [c for s in day.steps for c in s.claims]
        held = sum(c.held for c in claims)
        if as_json:
            echo_json(day.to_json())
        console.print(f"\n[bold]{held} of {len(claims)} claims held[/bold] in {seconds:.0f} s; "
                      f"the files are in {day.folder}")
        console.print("next: `pgsteady dashboard` to look at the day in a browser, `pgsteady db stop` to stop "
                      "the embedded server")
        sys.exit(0 if day.held else 1)
