"""`pgsteady metrics`: serve Prometheus metrics, /healthz and /readyz."""

from __future__ import annotations

import signal

import click

from ..errors import ConfigError
from .base import connect


def register(cli: click.Group) -> None:
    @cli.command("metrics")
    @click.option("--host", default="127.0.0.1", show_default=True,
                  help="Address to listen on (0.0.0.0 for every interface).")
    @click.option("--port", type=click.IntRange(0, 65535), default=9188, show_default=True,
                  envvar="PGSTEADY_METRICS_PORT", help="Port to listen on (0 picks a free one).")
    @click.option("--max-wait", type=click.FloatRange(0), default=300.0, show_default=True,
                  help="/readyz fails when a queue's oldest due job has waited longer (seconds).")
    @click.option("--worker-timeout", type=click.FloatRange(1), default=60.0, show_default=True,
                  help="Seconds without a heartbeat before a worker stops counting in pgsteady_workers.")
    @click.option("--min-workers", type=click.IntRange(0), default=1, show_default=True,
                  help="/readyz fails with fewer live workers (0: never).")
    @click.pass_obj
    def metrics_cmd(state, host, port, max_wait, worker_timeout, min_workers) -> None:
        """Serve /metrics (Prometheus text format), /healthz and /readyz.

        The numbers are read from the database at each scrape and are the same
        from every process, so one scrape target is enough. Counters come from
        the maintenance leader's counter pass and lag it by a few seconds.
        """
        from ..monitoring import server  # prometheus-client loads only for this command
        from ..monitoring.questions import Thresholds
        state.resolved_dsn()  # at once: a bad DSN is one line before serving, and threads share the answer
        app = server.MetricsApp(None, state.schema, thresholds=Thresholds(
            max_wait=max_wait, worker_timeout=worker_timeout, min_workers=min_workers),
            connect=lambda: connect(state, schema=False, connect_timeout=5))  # a schema not current is a finding
        try:
            httpd = server.make(app, host, port)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host") from None
        bound_host, bound_port = httpd.server_address[:2]
        click.echo(f"serving http://{bound_host}:{bound_port}/metrics (and /healthz, /readyz); Ctrl-C stops",
                   err=True)
        # SIGTERM (what service managers and `kill` send) stops it like Ctrl-C.
        # SIGINT alone is not enough: a shell starts background jobs with SIGINT
        # ignored, and Python then installs no KeyboardInterrupt for it.
        signal.signal(signal.SIGTERM, _stop)
        try:
            httpd.serve_forever()
        except (KeyboardInterrupt, _Stopped):
            pass
        finally:
            httpd.server_close()


class _Stopped(Exception):
    pass


def _stop(signum, frame) -> None:
    raise _Stopped
