"""The HTTP facts of the header and upload checks: one GET per URL, and an optional upload probe.

Redirects are not followed: the headers of the response the URL itself gives
are what a browser sees first (HSTS on a redirect counts; a cookie set on a
redirect counts), and a redirect's target is a URL of its own to check.
The body is never read beyond a few kilobytes.

The upload probe announces a body larger than any sane limit (``POST`` with
``Content-Length`` and ``Expect: 100-continue``) and sends none: a server
with a limit answers 413 at once; one that answers ``100 Continue`` or waits
would have read it all.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..errors import ConfigError

PROBE_BYTES = 1 << 30
USER_AGENT = "pgsteady-security-check"


@dataclass
class Probe:
    outcome: str            # refused | continue | waited | answered | error
    status: int | None = None
    detail: str = ""


@dataclass
class Response:
    url: str
    scheme: str
    loopback: bool
    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    error: str | None = None
    probe: Probe | None = None

    def header(self, name: str) -> str | None:
        """The values of a header joined with ", " (as HTTP allows), None when absent."""
        values = self.all(name)
        return ", ".join(values) if values else None

    def all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def validate_url(url: str) -> str:
    if not url.isascii() or any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise ConfigError(f"--url {url!r} holds spaces, control or non-ASCII characters; percent-encode them")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"--url {url!r} is not an http:// or https:// URL; give the page's full address")
    return url


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def fetch(url: str, *, timeout: float = 10.0, probe: bool = False) -> Response:
    validate_url(url)
    parts = urlsplit(url)
    resp = Response(url, parts.scheme, _is_loopback(parts.hostname or ""))
    opener = urllib.request.build_opener(_NoRedirect)
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with opener.open(request, timeout=timeout) as r:
            resp.status, resp.headers = r.status, list(r.headers.items())
            r.read(4096)
    except urllib.error.HTTPError as exc:  # 3xx (not followed), 4xx and 5xx still carry headers
        resp.status, resp.headers = exc.code, list(exc.headers.items())
        exc.close()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        resp.error = f"cannot fetch {url}: {reason}"
    if probe and resp.error is None:
        resp.probe = probe_upload(url, timeout=timeout)
    return resp


def probe_upload(url: str, *, timeout: float = 10.0, size: int = PROBE_BYTES) -> Probe:
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    authority = parts.netloc.rpartition("@")[2]
    head = (f"POST {path} HTTP/1.1\r\nHost: {authority}\r\nUser-Agent: {USER_AGENT}\r\n"
            f"Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n"
            "Expect: 100-continue\r\nConnection: close\r\n\r\n")
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw:
            sock = ssl.create_default_context().wrap_socket(raw, server_hostname=host) \
                if parts.scheme == "https" else raw
            sock.sendall(head.encode("ascii"))
            data = b""
            while b"\r\n" not in data and len(data) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
    except socket.timeout:
        return Probe("waited", detail=f"no answer within {timeout:g}s: the server waits for the body")
    except ConnectionResetError:
        return Probe("refused", detail="the server closed the connection")
    except OSError as exc:
        return Probe("error", detail=str(exc))
    line = data.split(b"\r\n", 1)[0].decode("latin-1")
    fields = line.split()
    if len(fields) < 2 or not fields[1].isdigit():
        return Probe("refused", detail="the server closed the connection") if not data else \
            Probe("error", detail=f"not an HTTP answer: {line[:80]!r}")
    status = int(fields[1])
    if status == 100:
        return Probe("continue", status, "the server asked for the body")
    if status == 413:
        return Probe("refused", status, "413 Payload Too Large before reading the body")
    if status >= 400:
        return Probe("refused", status, f"{status} before reading the body")
    return Probe("answered", status, f"{status} without reading the body")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
