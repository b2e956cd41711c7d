"""`pgsteady deploy mark|list|compare`: record deployments and judge the last one.

`compare` exits 1 when the deploy made things worse, so a pipeline can wait
a while after deploying and then gate on it.
"""

from __future__ import annotations

from datetime import timedelta

import click
from rich.console import Console
from rich.table import Table

from ..monitoring import deploys
from ..queries import for_schema
from .base import answer_no, cell, clean, connect, echo_json, json_option
from .status import render_deploy


def register(cli: click.Group) -> None:
    @cli.group("deploy")
    def deploy_group() -> None:
        """Deploy marks: `status` compares the windows before and after the last one."""

    @deploy_group.command("mark")
    @click.argument("version")
    @click.option("--note", metavar="TEXT", help="What changed, for the people reading status later.")
    @click.option("--by", metavar="WHO", help="Who deployed [default: user@host].")
    @json_option
    @click.pass_obj
    def mark_cmd(state, version, note, by, as_json) -> None:
        """Record that VERSION was deployed now."""
        with connect(state) as conn:
            row = deploys.mark(conn, for_schema(state.schema), version, note=note, by=by)
        if as_json:
            echo_json(row)
        else:
            click.echo(f"deploy {row['id']} marked: {clean(row['version'])} at {row['marked_at']:%Y-%m-%d %H:%M:%S %Z}")

    @deploy_group.command("list")
    @click.option("--limit", type=click.IntRange(1, 10_000), default=20, show_default=True)
    @json_option
    @click.pass_obj
    def list_cmd(state, limit, as_json) -> None:
        """The latest deploy marks first."""
        with connect(state) as conn:
            rows = deploys.list_deploys(conn, for_schema(state.schema), limit=limit)
        if as_json:
            echo_json(rows)
            return
        table = Table(box=None, header_style="bold")
        for col in ("id", "version", "marked at", "by", "note"):
            table.add_column(col, overflow="fold")
        for r in rows:
            table.add_row(str(r["id"]), cell(r["version"]), f"{r['marked_at']:%Y-%m-%d %H:%M:%S}",
                          cell(r["marked_by"]), cell(r["note"]))
        Console().print(table)
        click.echo(f"{len(rows)} deploy(s)")

    @deploy_group.command("compare")
    @click.option("--id", "deploy_id", type=int, help="The mark to judge [default: the latest].")
    @click.option("--queue", metavar="Q", help="Only this queue.")
    @click.option("--window", type=click.IntRange(5), default=60, show_default=True, metavar="MINUTES",
                  help="Longest window compared on each side of the mark.")
    @json_option
    @click.pass_context
    def compare_cmd(ctx: click.Context, deploy_id, queue, window, as_json) -> None:
        """Did the deploy change anything? Exit 1 when it made things worse."""
        state = ctx.obj
        q = for_schema(state.schema)
        with connect(state) as conn:
            progress = conn.execute(q.counter_progress).fetchone()
            until = progress[0] if progress else conn.execute("SELECT now()").fetchone()[0]
            result = deploys.compare(conn, q, until=until, rule=deploys.Rule(window=timedelta(minutes=window)),
                                     deploy_id=deploy_id, queue=queue)
        if result is None:
            what = f"no deploy mark with id {deploy_id}" if deploy_id else "no deploy marked yet"
            raise deploys.DeployNotFound(f"{what}; `pgsteady deploy list` shows the marks, "
                                         "`pgsteady deploy mark VERSION` records one")
        if as_json:
            echo_json(result)
        else:
            render_deploy(result, Console(highlight=False))
        if result["verdict"] == deploys.WORSE:
            answer_no()
