"""The metrics endpoint and the probes orchestrators ask: /metrics, /healthz, /readyz.

``MetricsApp`` is a plain WSGI application, so `pgsteady metrics` serves it
with the standard library and the dashboard can mount it later (Starlette
through a WSGI adapter, or by calling ``metrics()``, ``healthz()`` and
``readyz()`` itself). Each request opens its own short connection: a scrape
every few seconds does not need a pool, and a restarted PostgreSQL never
leaves a dead pooled connection behind.

- ``/healthz``: the process answers and the database does (``SELECT 1``).
- ``/readyz``: the status questions marked ``readiness`` in
  ``questions.QUESTIONS`` have no finding: the schema is current, enough
  workers are alive, no unpaused queue has a due job older than
  ``max_wait`` and no running job is stuck past its lease.

Both answer 200 or 503 with a one-line JSON body saying why. The bodies are
unauthenticated, so they never name the database's user, host or database
(those go to the log).

The server bounds what a client can hold: at most
``METRICS_MAX_CONNECTIONS`` connections are served at once (more are closed
at once), and a connection that sends nothing for ``METRICS_IDLE_TIMEOUT``
seconds is closed (both in pgsteady/security/settings.py).
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import psycopg

from ..database import connect, scrub
from ..errors import PgsteadyError
from ..queries import for_schema
from ..security.settings import METRICS_IDLE_TIMEOUT, METRICS_MAX_CONNECTIONS
from . import metrics
from . import snapshot as snapshots
from .questions import Thresholds, ask
from .snapshot import Snapshot

log = logging.getLogger("pgsteady.monitoring")
Response = tuple[int, str, bytes]
_REASONS = {200: "200 OK", 404: "404 Not Found", 405: "405 Method Not Allowed", 503: "503 Service Unavailable"}
UNREACHABLE = "the database cannot be reached (the details are in this server's log)"


class MetricsApp:
    """WSGI: /metrics, /healthz and /readyz for one database and schema."""

    def __init__(self, dsn: str | None, schema: str = "pgsteady", *, max_wait: float = 300.0,
                 worker_timeout: float = 60.0, connect_timeout: float = 5.0,
                 thresholds: Thresholds | None = None,
                 connect: Callable[[], psycopg.Connection] | None = None) -> None:
        """``connect``: how each request opens its connection (the CLI passes its
        one way, ``cli.base.connect``); else ``dsn`` is opened with ``connect_timeout``."""
        if dsn is None and connect is None:
            raise ValueError("MetricsApp needs a dsn or a connect function")
        self.dsn = dsn
        self._open = connect
        self.q = for_schema(schema)
        self.thresholds = thresholds or Thresholds(max_wait=max_wait, worker_timeout=worker_timeout)
        self.connect_timeout = connect_timeout
        self.routes: dict[str, Callable[[], Response]] = {
            "/metrics": self.metrics, "/healthz": self.healthz, "/readyz": self.readyz}

    def _connect(self) -> psycopg.Connection:
        if self._open is not None:
            return self._open()
        return connect(self.dsn, autocommit=True, connect_timeout=max(1, int(self.connect_timeout)))

    def _snapshot(self, read: Callable[[psycopg.Connection], Snapshot]) -> Snapshot:
        try:
            with self._connect() as conn:
                return read(conn)
        except (PgsteadyError, psycopg.Error) as exc:
            log.warning("cannot read the database (%s)", _line(exc))
            return snapshots.unreachable(self.q.schema, UNREACHABLE)

    def metrics(self) -> Response:
        # Still 200 when the database is down: the scrape worked and says so.
        snap = self._snapshot(lambda conn: metrics.read(conn, self.q))
        return 200, metrics.CONTENT_TYPE, metrics.render(snap, self.thresholds)

    def healthz(self) -> Response:
        try:
            with self._connect() as conn:
                conn.execute("SELECT 1")
        except (PgsteadyError, psycopg.Error) as exc:
            log.warning("healthz: %s", _line(exc))
            return _json(503, ok=False, reason=UNREACHABLE)
        return _json(200, ok=True)

    def readyz(self) -> Response:
        snap = self._snapshot(lambda conn: snapshots.read(conn, self.q, windows=False, rule=None))
        findings = ask(snap, self.thresholds, readiness_only=True)
        if findings:
            return _json(503, ok=False, reason=findings[0].text, reasons=[f.text for f in findings])
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
                                          ("Cache-Control", "no-store"), ("X-Content-Type-Options", "nosniff")])
        return [b""] if environ.get("REQUEST_METHOD") == "HEAD" else [body]


class BoundedServer(WSGIServer):
    """One thread per connection, but at most ``max_connections`` of them:
    past the bound a new connection is closed at once, so idle or slow
    clients cannot pile up threads. Threads die with the process."""

    max_connections = METRICS_MAX_CONNECTIONS
    request_queue_size = 128  # the listen backlog: a burst is accepted (and refused past the bound) quickly

    def server_activate(self) -> None:
        super().server_activate()
        self.slots = threading.BoundedSemaphore(self.max_connections)
        self.refused = 0

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.refused += 1
            self.shutdown_request(request)
            return
        threading.Thread(target=self._serve, args=(request, client_address), daemon=True,
                         name="pgsteady-metrics").start()

    def _serve(self, request: Any, client_address: Any) -> None:
        try:
            self.finish_request(request, client_address)
        except Exception as exc:  # a client that timed out or hung up: nothing to answer
            log.debug("metrics connection from %s ended: %s", client_address[0], type(exc).__name__)
        finally:
            self.shutdown_request(request)
            self.slots.release()


class _QuietHandler(WSGIRequestHandler):
    timeout = METRICS_IDLE_TIMEOUT  # StreamRequestHandler applies it to the socket: idle clients are closed

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        log.debug("%s - %s", self.address_string(), format % args)


def make(app: MetricsApp, host: str = "127.0.0.1", port: int = 9188, *,
         max_connections: int = METRICS_MAX_CONNECTIONS, idle_timeout: float = METRICS_IDLE_TIMEOUT) -> WSGIServer:
    """A bounded threaded HTTP server for ``app``, bound but not yet serving (port 0 picks a free port)."""
    server = type("Server", (BoundedServer,), {"max_connections": max_connections})
    handler = type("Handler", (_QuietHandler,), {"timeout": idle_timeout})
    return make_server(host, port, app, server_class=server, handler_class=handler)


def _json(status: int, **body: Any) -> Response:
    return status, "application/json", (json.dumps(body) + "\n").encode()


def _line(exc: BaseException) -> str:
    text = scrub(str(exc)).strip().splitlines()
    return text[0] if text else type(exc).__name__
