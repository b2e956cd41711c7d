"""How each proxy or CDN is asked to forget URLs and surrogate keys.

An adapter sends one batch (no more than its ``url_batch`` / ``key_batch``)
and returns the provider's answer; it raises ``Throttled`` on 429 and 5xx
(with the Retry-After the provider gave, if any) and ``Refused`` on any other
failure. Tokens are read from the worker's environment when a batch is sent
(rotating one needs no restart of anything but the environment), sent only
in a request header, and never put in a message, log line or job argument.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from datetime import datetime, timezone
from typing import Any

from ...errors import ConfigError
from ...security.settings import MASK, PURGE_HTTP_TIMEOUT, PURGE_TOKEN_ENV

KEY = re.compile(r"^[A-Za-z0-9_.:-]{1,256}$")
SECRET_HEADERS = ("authorization", "fastly-key")


@dataclass
class Answer:
    status: int
    body: str


class Throttled(Exception):
    """429 or 5xx: worth trying again, after ``retry_after`` seconds when the provider said so."""

    def __init__(self, status: int, body: str, retry_after: float | None) -> None:
        wait = f", Retry-After {retry_after:g}s" if retry_after is not None else ""
        super().__init__(f"HTTP {status}{wait}: {body[:200]}" if status else body[:200])
        self.status, self.body, self.retry_after = status, body, retry_after


class Refused(Exception):
    """Any other failure answer (a bad token, an unknown zone): retried with backoff like any task error."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds())
    except (TypeError, ValueError):
        return None


def send(method: str, url: str, headers: dict[str, str], body: bytes | None = None, *, ok: tuple[int, ...] = ()) -> Answer:
    secrets = [v.split(" ")[-1] for k, v in headers.items() if k.lower() in SECRET_HEADERS and v]

    def clean(text: str) -> str:  # a provider that echoes the request must not put our token in the history
        for secret in secrets:
            text = text.replace(secret, MASK)
        return text

    req = urllib.request.Request(url, data=body, method=method, headers={"User-Agent": "pgsteady-cdn-purge", **headers})
    try:
        with urllib.request.build_opener(_NoRedirect).open(req, timeout=PURGE_HTTP_TIMEOUT) as resp:
            return Answer(resp.status, clean(resp.read(64 * 1024).decode("utf-8", "replace")))
    except urllib.error.HTTPError as exc:
        text = clean(exc.read(64 * 1024).decode("utf-8", "replace"))
        if exc.code in ok:
            return Answer(exc.code, text)
        if exc.code == 429 or exc.code >= 500:
            raise Throttled(exc.code, text, retry_after(exc.headers.get("Retry-After"))) from None
        raise Refused(f"HTTP {exc.code} from {urllib.parse.urlsplit(url).netloc}: {text[:200]}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Throttled(0, f"could not reach {urllib.parse.urlsplit(url).netloc}: {getattr(exc, 'reason', exc)}", None) from None


def _base(url: str, what: str) -> str:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(f"{what} base_url {url!r} must be http(s)://host[:port][/path]")
    return url.rstrip("/")


def _token(env: str) -> str:
    token = os.environ.get(env, "")
    if not token:
        raise Refused(f"{env} is not set in the worker's environment; set it to the API token")
    return token


def _path(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


@dataclass
class Nginx:
    """nginx with the compiled configuration: ``PURGE <path>`` (the cache-purge module); 404 means not cached."""

    base_url: str = "http://127.0.0.1"
    host: str | None = None                   # the Host the cached pages were served under
    variants: list[dict[str, str]] = field(default_factory=lambda: [{}, {"Accept-Encoding": "gzip"}])
    name = "nginx"
    url_batch = 1
    key_batch = 0
    limits = {"max_running": 4}

    def __post_init__(self) -> None:
        self.base_url = _base(self.base_url, "nginx")

    def purge(self, kind: str, items: list[str]) -> Answer:
        answers = []
        for variant in self.variants:  # one cached copy per Vary variant the rules keep
            hdrs = {**variant, **({"Host": self.host} if self.host else {})}
            answers.append(send("PURGE", self.base_url + _path(items[0]), hdrs, ok=(404,)))
        best = min(answers, key=lambda a: a.status)
        return Answer(best.status, " | ".join(f"{a.status}" for a in answers))


@dataclass
class Varnish:
    """Varnish with the compiled VCL: ``PURGE <path>``, and ``BAN`` with ``X-Purge-Keys`` for surrogate keys."""

    base_url: str = "http://127.0.0.1"
    host: str | None = None
    name = "varnish"
    url_batch = 1
    key_batch = 100
    limits = {"max_running": 4}

    def __post_init__(self) -> None:
        self.base_url = _base(self.base_url, "varnish")

    def purge(self, kind: str, items: list[str]) -> Answer:
        hdrs = {"Host": self.host} if self.host else {}
        if kind == "urls":
            return send("PURGE", self.base_url + _path(items[0]), hdrs, ok=(404,))
        return send("BAN", self.base_url + "/", {**hdrs, "X-Purge-Keys": " ".join(items)})


@dataclass
class Fastly:
    """Fastly's API: surrogate keys 256 per request, URLs one per request."""

    service_id: str
    site: str = ""                            # https://www.example.com, to make paths absolute
    base_url: str = "https://api.fastly.com"
    token_env: str = PURGE_TOKEN_ENV["fastly"]
    name = "fastly"
    url_batch = 1
    key_batch = 256
    limits = {"max_running": 2, "max_per_second": 5}

    def __post_init__(self) -> None:
        self.base_url = _base(self.base_url, "fastly")
        if not re.match(r"^[A-Za-z0-9]{1,64}$", self.service_id):
            raise ConfigError("fastly service_id must be letters and digits")

    def purge(self, kind: str, items: list[str]) -> Answer:
        hdrs = {"Fastly-Key": _token(self.token_env), "Accept": "application/json"}
        if kind == "keys":
            return send("POST", f"{self.base_url}/service/{self.service_id}/purge", {**hdrs, "Surrogate-Key": " ".join(items)})
        url = absolute(items[0], self.site)
        quoted = urllib.parse.quote(url.split("://", 1)[1], safe="/?&=%:+,;@")
        return send("POST", f"{self.base_url}/purge/{quoted}", hdrs)


@dataclass
class Cloudflare:
    """Cloudflare's API: ``purge_cache`` with up to 30 files or tags per request."""

    zone_id: str
    site: str = ""
    base_url: str = "https://api.cloudflare.com/client/v4"
    token_env: str = PURGE_TOKEN_ENV["cloudflare"]
    name = "cloudflare"
    url_batch = 30
    key_batch = 30
    limits = {"max_running": 1, "max_per_second": 2}

    def __post_init__(self) -> None:
        self.base_url = _base(self.base_url, "cloudflare")
        if not re.match(r"^[A-Za-z0-9]{1,64}$", self.zone_id):
            raise ConfigError("cloudflare zone_id must be letters and digits")

    def purge(self, kind: str, items: list[str]) -> Answer:
        body = {"files": [absolute(u, self.site) for u in items]} if kind == "urls" else {"tags": items}
        answer = send("POST", f"{self.base_url}/zones/{self.zone_id}/purge_cache",
                      {"Authorization": f"Bearer {_token(self.token_env)}", "Content-Type": "application/json"},
                      json.dumps(body).encode())
        try:
            success = json.loads(answer.body).get("success", True)
        except (ValueError, AttributeError):
            success = True
        if success is False:
            raise Refused(f"cloudflare answered success=false: {answer.body[:200]}")
        return answer


def absolute(url: str, site: str) -> str:
    if url.startswith("/"):
        if not site:
            raise Refused(f"{url!r} is a path; give the adapter site='https://www.example.com' or enqueue full URLs")
        return site.rstrip("/") + url
    return url


ADAPTERS = {"nginx": Nginx, "varnish": Varnish, "fastly": Fastly, "cloudflare": Cloudflare}


def from_config(config: dict[str, Any]) -> Any:
    """An adapter from a mapping such as ``{"provider": "cloudflare", "zone_id": "...", "site": "https://..."}``."""
    config = dict(config)
    provider = config.pop("provider", None)
    if provider not in ADAPTERS:
        raise ConfigError(f"cdn purge provider {provider!r} is not one of {', '.join(ADAPTERS)}")
    if "token" in config:
        raise ConfigError("put the token in the worker's environment (token_env names the variable), not in the config")
    try:
        return ADAPTERS[provider](**config)
    except TypeError as exc:
        raise ConfigError(f"cdn purge {provider}: {exc}") from None
