"""`pgsteady demo`: import 1,000 synthetic posts through the job system."""

from __future__ import annotations

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .base import answer_no, echo_json, json_option


def register(cli: click.Group) -> None:
    @cli.command("demo")
    @click.option("--jobs", "n", type=click.IntRange(1, 1_000_000), default=1000, show_default=True,
                  help="How many import jobs to run.")
    @click.option("--concurrency", type=click.IntRange(1, 1000), default=10, show_default=True)
    @json_option
    @click.pass_obj
    def demo_cmd(state, n, concurrency, as_json) -> None:
        """Migrate, enqueue N import jobs of synthetic posts, run a worker, summarise.

        Uses the embedded PostgreSQL unless --dsn / PGSTEADY_DSN is set. Every
        50th post fails on its first attempt and is retried; posts are written
        by a transactional task, so each lands exactly once.
        """
        from .. import demo

        demo.app.configure(dsn=state.dsn, schema=state.schema_option)
        console = Console(stderr=True)
        if not as_json:
            console.print(f"[bold]pgsteady demo[/bold]: {n:,} import jobs on {_where(demo.app)}")
        with Progress(TextColumn("importing posts"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, disable=as_json, transient=False) as progress:
            bar = progress.add_task("import", total=n)
            summary = demo.run(n, concurrency=concurrency,
                               on_progress=lambda done, total: progress.update(bar, completed=done))
        if as_json:
            echo_json({**summary.__dict__, "per_second": round(summary.per_second, 1)})
        else:
            ok = summary.rows == n and summary.duplicate_rows == 0 and summary.succeeded == n
            click.echo(
                f"enqueued {summary.enqueued:,} jobs (batch {summary.batch}); enqueued again: "
                f"{summary.second_enqueue_new} new, thanks to idempotency keys\n"
                f"succeeded {summary.succeeded:,}, failed {summary.failed}, retried {summary.retries} "
                f"(every 50th post fails once on purpose)\n"
                f"posts stored {summary.rows:,}, duplicates {summary.duplicate_rows}: "
                f"{'each post exactly once' if ok else 'MISMATCH'}\n"
                f"{summary.seconds:.2f} s, {summary.per_second:,.0f} jobs/s on {summary.dsn_name}\n"
                f"next: `pgsteady jobs list --app pgsteady.demo:app`, `pgsteady db status`, `pgsteady db stop`"
            )
        if summary.rows != n or summary.duplicate_rows or summary.succeeded != n:
            answer_no()


def _where(app) -> str:
    from ..database import describe

    return describe(app.dsn)
