"""The dashboard as an ASGI application: configuration, wiring, shared helpers.

``create_app(dsn)`` returns an ASGI app that `pgsteady dashboard` serves
with uvicorn and that a user can mount in their own Starlette or FastAPI
site (``Mount("/ops/jobs", app=create_app(dsn, auth=...))``). Pages are
server-rendered with Jinja2 (autoescape on: everything from the database is
untrusted); the one script only refreshes live pages and asks before bulk
actions, so every page reads and works without it.
"""

from __future__ import annotations

import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Iterator

import jinja2
import psycopg
from psycopg_pool import ConnectionPool
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..errors import ConfigError, PgsteadyError, check_options
from ..queries import Queries, for_schema
from ..security.settings import (DASHBOARD_MASKED_KEYS, DASHBOARD_MAX_BODY_BYTES, DASHBOARD_SESSION_SECONDS,
                                 mask_secrets, secret_key_re)
from .security import Auth, BodyLimit, Headers, LoginRequired, LoopbackHost, csrf_token

STATEMENT_TIMEOUT_MS = 5000


@dataclass
class Config:
    dsn: str
    schema: str = "pgsteady"
    auth: Auth = field(default_factory=Auth)
    read_only: bool = False
    mask_keys: str = DASHBOARD_MASKED_KEYS
    secret_key: str | None = None          # signs the session cookie; random per process when None
    session_seconds: int = DASHBOARD_SESSION_SECONDS
    max_body_bytes: int = DASHBOARD_MAX_BODY_BYTES
    https_only: bool = False               # Secure cookies (set behind TLS)
    refresh_seconds: int = 10
    allowed_hosts: tuple[str, ...] = ()   # Host names answered without a login besides loopback ones


class Dashboard:
    """What every handler shares: the config, the queries, a small pool, the templates."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.q: Queries = for_schema(config.schema)
        try:
            self.mask = secret_key_re(config.mask_keys)
        except re.error as exc:
            raise ConfigError(f"the masked keys pattern {config.mask_keys!r} is not a regular expression: {exc}")
        self._pool: ConnectionPool | None = None
        loader = jinja2.FileSystemLoader(str(resources.files("pgsteady") / "dashboard" / "templates"))
        self.env = jinja2.Environment(loader=loader, autoescape=True, undefined=jinja2.StrictUndefined,
                                      trim_blocks=True, lstrip_blocks=True)
        from . import views
        self.env.filters.update(views.FILTERS)

    def pool(self) -> ConnectionPool:
        if self._pool is None:
            timeout = STATEMENT_TIMEOUT_MS

            def configure(conn: psycopg.Connection) -> None:
                # A page must never hold the database for long: a slow filter gets a clear 4xx instead.
                conn.execute(f"SET statement_timeout = {int(timeout)}")

            self._pool = ConnectionPool(self.config.dsn, min_size=1, max_size=4, open=True, configure=configure,
                                        kwargs={"autocommit": True}, name="pgsteady-dashboard")
        return self._pool

    @contextmanager
    def conn(self) -> Iterator[psycopg.Connection]:
        try:
            with self.pool().connection(timeout=10) as conn:
                yield conn
        except psycopg.errors.QueryCanceled:
            raise HTTPException(422, "that took too long to read; narrow the filter (a shorter time window, "
                                     "a state or a queue)") from None
        except psycopg.OperationalError:
            raise HTTPException(503, "the database cannot be reached right now") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None

    def masked(self, value: Any) -> Any:
        return mask_secrets(value, self.mask)

    def actor(self, request: Request) -> str:
        """Who did it and from where, for the job's or queue's history."""
        who = request.scope.get("session", {}).get("user") or ("local" if not self.config.auth.required else "unknown")
        client = request.client.host if request.client else "?"
        return f"dashboard:{who} from {client}"

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        context.setdefault("live", False)
        session = request.scope.get("session")  # absent on a 500 page, served outside the session layer
        page = self.env.get_template(template).render(
            request=request, root=root, csrf=csrf_token(session) if session is not None else "",
            read_only=self.config.read_only, auth=self.config.auth.required,
            user=(session or {}).get("user"), flash=session.pop("flash", None) if session is not None else None,
            refresh=self.config.refresh_seconds, **context)
        return HTMLResponse(page, status_code=status)

    def redirect(self, request: Request, path: str) -> RedirectResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return RedirectResponse(root + path, status_code=303)


def create_app(dsn: str | None = None, schema: str = "pgsteady", *, config: Config | None = None,
               **options: Any) -> Any:
    """The dashboard for one database and schema, as an ASGI app.

    Options are the fields of :class:`Config` (``auth=Auth(password_hash=...)``,
    ``read_only=True``, ``mask_keys=...``).
    """
    if config is None:
        if dsn is None:
            raise ConfigError("create_app needs a DSN (or config=Config(...))")
        check_options(options, Config.__dataclass_fields__, "create_app")
        config = Config(dsn=dsn, schema=schema, **options)
    dash = Dashboard(config)
    from . import actions, pages

    routes = [*pages.routes(dash), *actions.routes(dash),
              Mount("/static", app=StaticFiles(directory=str(resources.files("pgsteady") / "dashboard" / "static")),
                    name="static")]

    async def http_error(request: Request, exc: HTTPException) -> Response:
        return dash.render(request, "error.html", status=exc.status_code, status_code=exc.status_code,
                           message=exc.detail)

    async def domain_error(request: Request, exc: PgsteadyError) -> Response:
        return dash.render(request, "error.html", status=400, status_code=400, message=str(exc))

    async def server_error(request: Request, exc: Exception) -> Response:
        import logging
        logging.getLogger("pgsteady.dashboard").exception("dashboard error on %s", request.url.path)
        return dash.render(request, "error.html", status=500, status_code=500,
                           message="something went wrong on the server; the details are in its log")

    def lifespan(app: Starlette):  # only when served on its own; a mounting app never calls it
        from contextlib import asynccontextmanager

        @asynccontextmanager
        async def span():
            yield
            dash.close()
        return span()

    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(LoopbackHost, auth=config.auth, allowed=tuple(config.allowed_hosts)),
            Middleware(BodyLimit, limit=config.max_body_bytes),
            Middleware(SessionMiddleware, secret_key=config.secret_key or secrets.token_urlsafe(32),
                       session_cookie="pgsteady_session", max_age=config.session_seconds, same_site="strict",
                       https_only=config.https_only),
            Middleware(LoginRequired, auth=config.auth),
        ],
        exception_handlers={HTTPException: http_error, PgsteadyError: domain_error, Exception: server_error},
        lifespan=lifespan,
    )
    app.state.dashboard = dash
    wrapped = Headers(app)
    wrapped.dashboard = dash  # type: ignore[attr-defined]
    return wrapped
