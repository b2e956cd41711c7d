"""What makes the dashboard safe to expose.

- Authentication: a password whose scrypt hash is configured (stdlib
  ``hashlib.scrypt``, compared in constant time) or a token; none at all
  only on a loopback address (`pgsteady dashboard` refuses otherwise).
  A login is a session in Starlette's signed cookie (itsdangerous),
  HttpOnly and SameSite=Strict, for ``DASHBOARD_SESSION_SECONDS``.
- CSRF: a random token per session, in a hidden field of every form; every
  state change is a POST that is refused (403) without it.
- Headers on every response (``Headers``): a CSP with no inline script and
  nothing from another origin, frame-ancestors 'none', nosniff,
  Referrer-Policy same-origin, and Cache-Control no-store on every page
  (they all show job data).
- Request bodies are limited to ``DASHBOARD_MAX_BODY_BYTES`` (``BodyLimit``).

The values live in pgsteady/security/settings.py.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..errors import ConfigError

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
    "cross-origin-opener-policy": "same-origin",
}
_SCRYPT = dict(n=2**14, r=8, p=1)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` (base64), for --password-hash / PGSTEADY_DASHBOARD_PASSWORD_HASH."""
    if not password:
        raise ConfigError("the dashboard password cannot be empty")
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return "$".join(["scrypt", str(_SCRYPT["n"]), str(_SCRYPT["r"]), str(_SCRYPT["p"]),
                     base64.b64encode(salt).decode(), base64.b64encode(digest).decode()])


def check_password_hash(stored: str) -> str:
    """The stored hash if it is well formed, else a ConfigError saying how to make one."""
    try:
        _parse(stored)
    except ValueError:
        raise ConfigError("the dashboard password hash is not of the form scrypt$N$r$p$salt$hash; make one with "
                          "`pgsteady dashboard --hash-password`") from None
    return stored


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes]:
    kind, n, r, p, salt, digest = stored.split("$")
    if kind != "scrypt":
        raise ValueError(kind)
    n_, r_, p_ = int(n), int(r), int(p)
    if not (2 <= n_ <= 2**20 and 1 <= r_ <= 32 and 1 <= p_ <= 16):
        raise ValueError("scrypt parameters out of range")
    return n_, r_, p_, base64.b64decode(salt, validate=True), base64.b64decode(digest, validate=True)


def verify_password(password: str, stored: str) -> bool:
    try:
        n, r, p, salt, digest = _parse(stored)
        got = hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, dklen=len(digest), maxmem=2**27)
    except (ValueError, UnicodeError):
        return False
    return hmac.compare_digest(got, digest)


@dataclass(frozen=True)
class Auth:
    """How people log in; ``user`` names them in the history."""

    password_hash: str | None = None
    token: str | None = None
    user: str = "admin"

    @property
    def required(self) -> bool:
        return bool(self.password_hash or self.token)

    def accepts(self, secret: str) -> bool:
        ok = False
        if self.token:
            ok |= hmac.compare_digest(secret.encode(), self.token.encode())
        if self.password_hash:
            ok |= verify_password(secret, self.password_hash)
        return ok


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def csrf_token(session: dict[str, Any]) -> str:
    token = session.get("csrf")
    if not token:
        token = session["csrf"] = secrets.token_urlsafe(32)
    return token


def csrf_ok(session: dict[str, Any], sent: str | None) -> bool:
    want = session.get("csrf")
    return bool(want and sent and hmac.compare_digest(str(sent).encode(), str(want).encode()))


class Headers:
    """Pure ASGI middleware: the security headers on every response, error pages included."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = scope.get("path", "").startswith("/static/")

        async def add(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    headers[name] = value
                headers["cache-control"] = "private, max-age=3600" if static else "no-store"
            await send(message)

        await self.app(scope, receive, add)


class LoginRequired:
    """With authentication configured, every path but /login and /static/
    needs a logged-in session: pages redirect to the login form, other
    methods get 401."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        root = scope.get("root_path", "")
        if path.startswith(root):
            path = path[len(root):] or "/"
        if (scope["type"] != "http" or not self.auth.required or path == "/login" or path.startswith("/static/")
                or scope.get("session", {}).get("user")):
            await self.app(scope, receive, send)
            return
        if scope.get("method") in ("GET", "HEAD"):
            location = (root.rstrip("/") + "/login").encode()
            await send({"type": "http.response.start", "status": 303, "headers": [
                (b"location", location), (b"content-length", b"0")]})
            await send({"type": "http.response.body", "body": b""})
            return
        await _plain(send, 401, "log in first")


class LoopbackHost:
    """Without a login, answer only requests whose Host header is a loopback
    name (or one of ``allowed``): a page of another site cannot reach an
    unauthenticated dashboard by pointing its own name at 127.0.0.1 (DNS
    rebinding) and then read it as same-origin."""

    def __init__(self, app: ASGIApp, auth: Auth, allowed: tuple[str, ...] = ()) -> None:
        self.app = app
        self.auth = auth
        self.allowed = {h.lower() for h in allowed}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not self.auth.required:
            host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            name = name.strip("[]")
            if not (is_loopback(name) or name in self.allowed or host in self.allowed):
                await _plain(send, 403, "this dashboard has no login, so it answers only on a loopback address "
                                        "(configure a password or a token, or allowed_hosts)")
                return
        await self.app(scope, receive, send)


def safe_back(path: str | None) -> str:
    """A local path to go back to after an action; anything else is the overview."""
    if path and re.fullmatch(r"/[A-Za-z0-9_\-./?=&%+:@]*", path) and not path.startswith("//"):
        return path
    return "/"


class TooLarge(Exception):
    pass


class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, by Content-Length
    or while they stream in, before any handler reads them whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            await _plain(send, 413, f"request body over {self.limit} bytes")
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise TooLarge
            return message

        started = False

        async def watch(message: Message) -> None:
            nonlocal started
            started |= message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watch)
        except TooLarge:
            if not started:
                await _plain(send, 413, f"request body over {self.limit} bytes")


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
