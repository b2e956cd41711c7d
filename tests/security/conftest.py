"""Fixtures for the security checklist: real roles (cluster-wide, so uniquely
named and dropped at teardown) and a local HTTP server with weak and hardened pages."""

from __future__ import annotations

import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgsteady.security.roles import grant_sql, role_names


class Roles:
    """Creates roles for one test and drops them (and what they own) at teardown."""

    def __init__(self, server_dsn: str) -> None:
        self.server_dsn = server_dsn
        self.made: list[tuple[str, str]] = []   # (role, database dsn it may own things in)
        self.prefix = f"sec{uuid.uuid4().hex[:8]}"

    def create(self, dsn: str, suffix: str, attributes: str = "") -> str:
        """A LOGIN role named after this test; returns a DSN for ``dsn`` as that role."""
        name = f"{self.prefix}_{suffix}"
        with psycopg.connect(self.server_dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN " + attributes).format(sql.Identifier(name)))
        self.made.append((name, dsn))
        return make_conninfo(dsn, user=name)

    def least_privilege(self, dsn: str, schema: str = "pgsteady") -> dict[str, str]:
        """Apply the SQL `pgsteady security roles` prints; {kind: DSN as that role}."""
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(grant_sql(schema, self.prefix))
        names = role_names(self.prefix)
        self.made += [(name, dsn) for name in names.values()]
        return {kind: make_conninfo(dsn, user=name) for kind, name in names.items()}

    def drop(self) -> None:
        for role, dsn in reversed(self.made):
            try:
                with psycopg.connect(dsn, autocommit=True) as conn:
                    conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            except psycopg.Error:
                pass  # the database is gone already
        with psycopg.connect(self.server_dsn, autocommit=True) as conn:
            for role, _ in self.made:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


@pytest.fixture
def roles(server_dsn: str, dsn: str):
    made = Roles(server_dsn)
    yield made
    made.drop()


WEAK_HEADERS = [
    ("Set-Cookie", "session=abc123"),
    ("Cache-Control", "public, max-age=600"),
    ("Referrer-Policy", "unsafe-url"),
]
HARDENED_HEADERS = [
    ("Strict-Transport-Security", "max-age=31536000; includeSubDomains"),
    ("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'; object-src 'none'"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
    ("Set-Cookie", "session=abc123; Secure; HttpOnly; SameSite=Strict; Path=/"),
    ("Cache-Control", "private, no-store"),
]
BODY_LIMIT = 64 * 1024


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass

    def _headers(self):
        return HARDENED_HEADERS if self.path.startswith("/hardened") else WEAK_HEADERS

    def do_GET(self) -> None:
        body = b"<html><body>ok</body></html>"
        self.send_response(200)
        for name, value in self._headers():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def handle_expect_100(self) -> bool:
        # The hardened page refuses an oversized body before reading it; the
        # weak one asks for it (the default handler's "100 Continue").
        if self.path.startswith("/hardened") and int(self.headers.get("Content-Length") or 0) > BODY_LIMIT:
            self.send_response(413)
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            return False
        if self.path.startswith("/silent"):
            return True  # no 100 Continue, no refusal: do_POST waits for the body
        return super().handle_expect_100()

    def do_POST(self) -> None:
        if self.path.startswith("/silent"):
            self.rfile.read(int(self.headers["Content-Length"]))  # until the client gives up
        self.close_connection = True


@pytest.fixture
def site():
    """http://127.0.0.1:PORT, serving /weak, /hardened and /silent (weak headers, and it waits for any body)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(5)
