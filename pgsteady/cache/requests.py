"""A request as a proxy sees it: method, normalised path, raw query, headers, cookies.

The evaluator must see what nginx sees, or the two disagree on exactly the
requests an attacker would pick. So the path is normalised the way nginx
normalises ``$uri`` (percent-decoded, slashes merged, dot segments resolved),
query parameter and cookie names are compared without case (as ``$arg_`` and
``$cookie_`` do) and not percent-decoded, and a query parameter whose *name*
is percent-encoded makes the request uncacheable everywhere: otherwise
``?%70review=1`` would reach the origin as ``preview`` while slipping past a
bypass on ``preview``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from .rules import Example, RulesError


@dataclass(frozen=True)
class Request:
    method: str
    path: str                 # normalised, decoded
    query: str                # raw, as sent
    headers: dict[str, str] = field(default_factory=dict)   # lower-case names
    cookies: dict[str, str] = field(default_factory=dict)   # lower-case names

    @property
    def target(self) -> str:
        return self.path + (f"?{self.query}" if self.query else "")

    def arg(self, name: str) -> str:
        """The first value of a query parameter ('' when absent), as nginx's $arg_<name>."""
        for pair in self.query.split("&"):
            key, _, value = pair.partition("=")
            if key.lower() == name.lower():
                return value
        return ""

    def has_arg(self, name: str) -> bool:
        """Whether the parameter appears at all (``?preview``, ``?preview=`` and ``?preview=1`` alike)."""
        return any(p.partition("=")[0].lower() == name.lower() for p in self.query.split("&"))

    def encoded_param_name(self) -> str | None:
        return next((p.partition("=")[0] for p in self.query.split("&") if "%" in p.partition("=")[0]), None)


def parse_url(url: str, where: str = "URL") -> tuple[str, str, str | None]:
    """(path, raw query, host or None) of ``/path?q`` or ``http(s)://host/path?q``."""
    if not isinstance(url, str) or not url or any(ord(c) <= 32 or ord(c) == 127 for c in url):
        raise RulesError(f"{where} {url!r} is not a URL; write /path?query or https://host/path (no spaces)")
    parts = urlsplit(url)
    if parts.scheme or parts.netloc:
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RulesError(f"{where} {url!r} is not a URL; write /path?query or https://host/path")
        return parts.path or "/", parts.query, parts.hostname
    if not url.startswith("/") or url.startswith("//"):
        raise RulesError(f"{where} {url!r} is not a URL; a path starts with a single / (for example /posts/hello)")
    return parts.path, parts.query, None


def normalise_path(raw: str) -> str:
    out: list[str] = []
    for seg in re.sub(r"/+", "/", unquote(raw)).split("/")[1:]:
        if seg == "..":
            if out:
                out.pop()
        elif seg != ".":
            out.append(seg)
    path = "/" + "/".join(out)
    return path + "/" if raw.endswith("/") and path != "/" and not raw.endswith("/..") else path


def parse_cookie_header(value: str) -> dict[str, str]:
    cookies: dict[str, str] = {}
    for part in value.split(";"):
        name, eq, v = part.strip().partition("=")
        if name and eq:
            cookies.setdefault(name.lower(), v.strip())
    return cookies


def build(url: str, *, method: str = "GET", headers: dict[str, str] | None = None,
          cookies: dict[str, str] | None = None) -> Request:
    path, query, _ = parse_url(url)
    hdrs = {k.lower(): v for k, v in (headers or {}).items()}
    jar = parse_cookie_header(hdrs.get("cookie", ""))
    jar.update({k.lower(): v for k, v in (cookies or {}).items()})
    return Request(method.upper(), normalise_path(path), query, hdrs, jar)


def from_example(ex: Example) -> Request:
    return build(ex.url, method=ex.method, headers=ex.headers, cookies=ex.cookies)


def cookie_header(cookies: dict[str, str]) -> str:
    return "; ".join(f"{k}={v}" for k, v in cookies.items())
