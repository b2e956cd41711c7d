"""The metrics endpoint and the probes orchestrators ask: /metrics, /healthz, /readyz.

``MetricsApp`` is a plain WSGI application, so `pgsteady metrics` serves it
with the standard library and the dashboard can mount it later (Starlette
through a WSGI adapter, or by calling ``metrics()``, ``healthz()`` and
``readyz()`` itself). Each request opens its own short connection: a scrape
every few seconds does not need a pool, and a restarted PostgreSQL never
leaves a dead pooled connection behind.

- ``/healthz``: the process answers and the database does (``SELECT 1``).
- ``/readyz``: keeping up: the schema is current and no unpaused queue has a
  due job older than ``max_wait`` seconds.

Both answer 200 or 503 with a one-line JSON body saying why.
"""

from __future__ import annotations

import json
import logging
import socketserver
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg

from ..database import connect, scrub
from ..errors import PgsteadyError
from ..migrations import check_current
from ..queries import for_schema
from . import metrics

log = logging.getLogger("pgsteady.monitoring")
Response = tuple[int, str, bytes]
_REASONS = {200: "200 OK", 404: "404 Not Found", 405: "405 Method Not Allowed", 503: "503 Service Unavailable"}


class MetricsApp:
    """WSGI: /metrics, /healthz and /readyz for one database and schema."""

    def __init__(self, dsn: str, schema: str = "pgsteady", *, max_wait: float = 300.0,
                 worker_timeout: float = 60.0, connect_timeout: float = 5.0) -> None:
        self.dsn = dsn
        self.q = for_schema(schema)
        self.max_wait = max_wait
        self.worker_timeout = worker_timeout
        self.connect_timeout = connect_timeout
        self.routes: dict[str, Callable[[], Response]] = {
            "/metrics": self.metrics, "/healthz": self.healthz, "/readyz": self.readyz}

    def _connect(self) -> psycopg.Connection:
        return connect(self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)))

    def metrics(self) -> Response:
        try:
            with self._connect() as conn:
                snap = metrics.read(conn, self.q, worker_timeout=self.worker_timeout)
        except (PgsteadyError, psycopg.Error) as exc:
            # Still 200: the scrape worked and says the database did not.
            log.warning("metrics: cannot read the database (%s)", scrub(str(exc)).strip().splitlines()[0])
            snap = metrics.Snapshot(database_up=False)
        return 200, metrics.CONTENT_TYPE, metrics.render(snap)

    def healthz(self) -> Response:
        try:
            with self._connect() as conn:
                conn.execute("SELECT 1")
        except (PgsteadyError, psycopg.Error) as exc:
            return _json(503, ok=False, reason=_line(exc))
        return _json(200, ok=True)

    def readyz(self) -> Response:
        try:
            with self._connect() as conn:
                check_current(conn, self.q.schema)
                rows = conn.execute(self.q.queue_depths, dict(queue=None)).fetchall()
        except (PgsteadyError, psycopg.Error) as exc:
            return _json(503, ok=False, reason=_line(exc))
        # Columns: queue, waiting, scheduled, running, oldest_age, paused.
        behind = {r[0]: round(r[4], 1) for r in rows if r[1] and not r[5] and r[4] > self.max_wait}
        if behind:
            worst = max(behind, key=behind.get)
            return _json(503, ok=False, reason=f"queue {worst!r}: oldest due job waited {behind[worst]}s "
                                               f"(threshold {self.max_wait:g}s)", behind=behind)
        return _json(200, ok=True)

    def __call__(self, environ: dict[str, Any], start_response: Callable) -> Iterable[bytes]:
        route = self.routes.get(environ.get("PATH_INFO") or "/")
        if route is None:
            status, ctype, body = _json(404, ok=False, reason="not found; try /metrics, /healthz or /readyz")
        elif environ.get("REQUEST_METHOD", "GET") not in ("GET", "HEAD"):
            status, ctype, body = _json(405, ok=False, reason="only GET and HEAD")
        else:
            status, ctype, body = route()
        start_response(_REASONS[status], [("Content-Type", ctype), ("Content-Length", str(len(body))),
                                          ("Cache-Control", "no-store")])
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


class _ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    # A slow scrape must not hold up a probe; threads die with the process.
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s - %s", self.address_string(), format % args)


def make(app: MetricsApp, host: str = "127.0.0.1", port: int = 9188) -> WSGIServer:
    """A threaded HTTP server for ``app``, bound but not yet serving (port 0 picks a free port)."""
    return make_server(host, port, app, server_class=_ThreadingServer, handler_class=_QuietHandler)


def _json(status: int, **body: Any) -> Response:
    return status, "application/json", (json.dumps(body) + "\n").encode()


def _line(exc: BaseException) -> str:
    text = scrub(str(exc)).strip().splitlines()
    return text[0] if text else type(exc).__name__
