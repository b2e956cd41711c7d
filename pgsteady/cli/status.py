"""`pgsteady status`: up, slow, failing, and did the last deploy change anything.

Exit codes: 0 healthy, 1 degraded, 2 down. A database that cannot be
reached is a "down" status (printed, in JSON too), not only an error line.
"""

from __future__ import annotations

import time
from datetime import timedelta

import click
from rich.console import Console
from rich.markup import escape
from rich.padding import Padding
from rich.table import Table

from ..errors import DatabaseUnavailable
from ..monitoring.deploys import Rule
from ..monitoring.questions import Thresholds
from ..monitoring.snapshot import unreachable
from ..monitoring.status import Status, collect, judge
from .base import connect, echo_json, json_option

_HEALTH_STYLE = {"healthy": "bold green", "degraded": "bold yellow", "down": "bold red"}
_VERDICT_STYLE = {"worse": "red", "better": "green", "no change": "", "not enough data": "dim"}


def register(cli: click.Group) -> None:
    d = Thresholds()

    @cli.command("status")
    @click.option("--queue", metavar="Q", help="Only this queue (and the workers that serve it).")
    @click.option("--max-wait", type=click.FloatRange(0), default=d.max_wait, show_default=True,
                  envvar="PGSTEADY_STATUS_MAX_WAIT", help="Seconds the oldest due job of a queue may wait before the queue is slow.")
    @click.option("--max-failure-rate", type=click.FloatRange(0, 1), default=d.max_failure_rate, show_default=True,
                  envvar="PGSTEADY_STATUS_MAX_FAILURE_RATE", help="Share of a task's attempts in 15 minutes that may fail.")
    @click.option("--min-attempts", type=click.IntRange(1), default=d.min_attempts, show_default=True,
                  envvar="PGSTEADY_STATUS_MIN_ATTEMPTS", help="Attempts a task needs in 15 minutes before its failure rate counts.")
    @click.option("--worker-timeout", type=click.FloatRange(1), default=d.worker_timeout, show_default=True,
                  envvar="PGSTEADY_STATUS_WORKER_TIMEOUT", help="Seconds without a heartbeat before a worker is down.")
    @click.option("--min-workers", type=click.IntRange(0), default=d.min_workers, show_default=True,
                  envvar="PGSTEADY_STATUS_MIN_WORKERS", help="Fewer live workers than this is down (0: never).")
    @click.option("--max-counter-lag", type=click.FloatRange(1), default=d.max_counter_lag, show_default=True,
                  envvar="PGSTEADY_STATUS_MAX_COUNTER_LAG", help="Seconds the counters may lag before status is degraded.")
    @click.option("--max-past-lease", type=click.FloatRange(0), default=d.max_past_lease, show_default=True,
                  envvar="PGSTEADY_STATUS_MAX_PAST_LEASE", help="Seconds a running job may be past its lease before status is degraded.")
    @click.option("--deploy-window", type=click.IntRange(5), default=60, show_default=True, metavar="MINUTES",
                  help="Longest window compared before and after the last deploy mark.")
    @json_option
    @click.pass_context
    def status_cmd(ctx: click.Context, queue, max_wait, max_failure_rate, min_attempts, worker_timeout, min_workers,
                   max_counter_lag, max_past_lease, deploy_window, as_json) -> None:
        """Is it up, is it slow, are jobs failing, did the last deploy change anything?

        Reads per-minute counters kept by the maintenance leader, never the job
        history, so it answers fast however many jobs there are. Exit code 0
        healthy, 1 degraded, 2 down.
        """
        state = ctx.obj
        thresholds = Thresholds(worker_timeout=worker_timeout, min_workers=min_workers, max_wait=max_wait,
                                max_failure_rate=max_failure_rate, min_attempts=min_attempts,
                                max_counter_lag=max_counter_lag, max_past_lease=max_past_lease)
        rule = Rule(window=timedelta(minutes=deploy_window))
        started = time.perf_counter()
        try:
            # No schema check here: a missing or old schema is one of the answers.
            conn = connect(state, reading=True, schema=False, connect_timeout=5)
        except DatabaseUnavailable as exc:  # unreachable, or the embedded server would not start
            result = judge(unreachable(state.schema, str(exc)), thresholds, started=started)
        else:
            with conn:
                result = collect(conn, state.schema, thresholds=thresholds, rule=rule, queue=queue, started=started)
        if as_json:
            echo_json(result.to_dict())
        else:
            render(result, Console(highlight=False))
        ctx.exit(result.exit_code)


def render(status: Status, console: Console) -> None:
    s = status.sections
    console.print(f"[{_HEALTH_STYLE[status.health]}]{status.health.upper()}[/]  "
                  f"[dim](answered in {status.seconds * 1000:.0f} ms)[/]")
    for reason in status.reasons:
        console.print(f"  - {reason}", markup=False)
    up = s.get("up", {})
    db = up.get("database", {})
    console.print("\n[bold]Up[/bold]")
    if not db.get("reachable"):
        console.print("  database: unreachable")
        return
    schema = up["schema"]
    console.print(f"  database: PostgreSQL {db['server_version']}; schema {schema['name']} version "
                  f"{schema['version']} ({'current' if schema['current'] else 'needs ' + str(schema['expected'])})")
    if "workers" not in up:
        return
    leader = up["leader"]
    who = ("unknown" if not leader["known"] else "none" if "worker_id" not in leader else
           f"{leader['worker_id']} ({'alive' if leader['alive'] else 'not renewing'})")
    console.print(f"  workers: {up['live_workers']} live, {up['dead_workers']} down; maintenance leader: {who}")
    if up["workers"]:
        table = Table(box=None, header_style="bold", pad_edge=False)
        for col in ("worker", "state", "queues", "conc.", "release", "heartbeat"):
            table.add_column(col, overflow="fold")
        for w in up["workers"]:
            table.add_row(escape(w["id"]), "[green]up[/]" if w["alive"] else "[red]down[/]",
                          escape(",".join(w["queues"] or ["*"])), str(w["concurrency"]),
                          escape(w["release"] or ""), f"{w['heartbeat_age']:.0f}s ago")
        console.print(Padding(table, (0, 0, 0, 2)))
    counters = s["counters"]
    lag = "never updated" if counters["lag_seconds"] is None else f"{counters['lag_seconds']:.0f}s behind"
    console.print(f"\n[bold]Slow[/bold]  [dim](counters {lag}; percentiles are bucket estimates)[/]")
    table = Table(box=None, header_style="bold", pad_edge=False)
    for col in ("queue", "waiting", "oldest", "running", "done/min 15m", "wait p50/p95 15m", "run p50/p95 15m",
                "wait p50/p95 24h", "run p50/p95 24h"):
        table.add_column(col, justify="left" if col == "queue" else "right")
    for qrow in s["slow"]["queues"]:
        r, day = qrow["last_15m"], qrow["last_24h"]
        name = escape(qrow["queue"]) + (" (paused)" if qrow["paused"] else "")
        table.add_row(f"[yellow]{name}[/]" if qrow["slow"] else name, str(qrow["waiting"]),
                      _secs(qrow["oldest_waiting_seconds"]) if qrow["waiting"] else "-", str(qrow["running"]),
                      _num(r["per_minute"]["succeeded"]), _pair(r["wait_seconds"]), _pair(r["run_seconds"]),
                      _pair(day["wait_seconds"]), _pair(day["run_seconds"]))
    console.print(Padding(table, (0, 0, 0, 2)) if s["slow"]["queues"] else "  no queues with jobs")
    past = s["slow"]["past_lease"]
    if past["jobs"]:
        style = "yellow" if past["stuck"] else "dim"
        console.print(f"  [{style}]{past['jobs']} running job(s) past their lease, the oldest by "
                      f"{_secs(past['oldest_seconds'])} (rescue takes them back)[/]")
    f = s["failing"]
    console.print("\n[bold]Failing[/bold]")
    for label, w in (("last 15m", f["last_15m"]), ("last 1h", f["last_1h"])):
        console.print(f"  {label}: {w['failures']} failed attempts ({w['failed']} failed for good, {w['retried']} "
                      f"retried, {w['discarded']} discarded) of {w['attempts']} = {_pct(w['failure_rate'])}; "
                      f"{w['rescued']} rescued, {w['rejected']} late writes rejected; "
                      f"{_num(w['per_minute']['failures'])} failures/min")
    for t in f["tasks"]:
        mark = "[red]FAILING[/] " if t["failing"] else ""
        r = t["last_15m"]
        console.print(f"  {mark}{escape(t['task'])}: {_pct(r['failure_rate'])} of {r['attempts']} in 15m, "
                      f"{t['last_1h']['failures']} failures in 1h")
    if f["top_errors"]:
        console.print("  top errors (last hour):")
        for e in f["top_errors"]:
            console.print(f"    {e['failures']:>6}  {e['task']}: {e['message']}  (job {e['last_job_id']})",
                          markup=False)
    console.print("\n[bold]Deploy[/bold]")
    dep = s["deploy"]
    if dep is None:
        console.print("  no deploy marked: `pgsteady deploy mark VERSION` records one")
        return
    render_deploy(dep, console)


def render_deploy(dep: dict, console: Console) -> None:
    d = dep["deploy"]
    style = _VERDICT_STYLE[dep["verdict"]]
    note = f" ({escape(d['note'])})" if d["note"] else ""
    verdict = f"[{style}]{dep['verdict']}[/]" if style else dep["verdict"]
    console.print(f"  {escape(d['version'])} marked {d['marked_at']:%Y-%m-%d %H:%M:%S} by "
                  f"{escape(d['marked_by'] or '?')}{note}: {verdict} - {escape(dep['why'])}")
    console.print(f"  windows: {dep['window_minutes']} min each side", highlight=False)
    for t in dep["tasks"]:
        parts = "; ".join(f"{m['metric']} {m['why']} {m['verdict']}" for m in t["metrics"]
                          if m["verdict"] != "not enough data")
        console.print(f"    {escape(t['task'])}: [{_VERDICT_STYLE[t['verdict']] or 'default'}]{t['verdict']}[/]"
                      + (f" ({escape(parts)})" if parts else ""))
    console.print(f"  [dim]rule: {escape(dep['rule'])}[/]")


def _secs(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f}ms"
    if value < 120:
        return f"{value:.1f}s"
    if value < 7200:
        return f"{value / 60:.1f}m"
    return f"{value / 3600:.1f}h"


def _pair(d: dict) -> str:
    return "-" if d["p50"] is None else f"{_secs(d['p50'])}/{_secs(d['p95'])}"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"
