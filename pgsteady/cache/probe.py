"""`cache probe`: what a live CDN did with a page, next to what the rules say.

One GET per URL, redirects not followed (a redirect is itself an answer
worth seeing), at most PROBE_MAX_BYTES of body read. The headers CDNs use to
say what they did are reported as sent: X-Cache (Fastly, Varnish, nginx
with our config, CloudFront), CF-Cache-Status (Cloudflare), X-Cache-Status,
X-Served-By and Age.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field

from ..security.settings import PROBE_MAX_BYTES, PROBE_TIMEOUT
from . import requests
from .evaluate import decide
from .rules import Rules, RulesError
from .targets import comment

CDN_HEADERS = ("cache-control", "age", "x-cache", "cf-cache-status", "x-cache-status", "x-served-by", "vary")
_HIT = ("hit", "stale", "updating", "revalidated")


@dataclass
class Probe:
    url: str
    status: int | None
    headers: dict[str, str] = field(default_factory=dict)
    error: str | None = None
    expected: dict | None = None
    verdict: str = "observed"       # observed | agrees | disagrees | error
    why: str = ""

    @property
    def cdn_says(self) -> str:
        for h in ("cf-cache-status", "x-cache", "x-cache-status"):
            if h in self.headers:
                return self.headers[h]
        return f"age {self.headers['age']}" if "age" in self.headers else "(no cache status header)"

    def to_json(self) -> dict:
        return {"url": self.url, "status": self.status, "headers": self.headers, "cdn_says": self.cdn_says,
                "error": self.error, "expected": self.expected, "verdict": self.verdict, "why": self.why}


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def check_url(url: str) -> None:
    path, _query, host = requests.parse_url(url, "probe URL")
    if host is None:
        raise RulesError(f"probe URL {url!r} is not a URL; give the full address, for example https://www.example.com{path}")


def fetch(url: str) -> Probe:
    opener = urllib.request.build_opener(_NoRedirect)
    req = urllib.request.Request(url, headers={"User-Agent": "pgsteady-cache-probe"})
    try:
        resp = opener.open(req, timeout=PROBE_TIMEOUT)
    except urllib.error.HTTPError as exc:
        resp = exc
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return Probe(url, None, error=comment(str(getattr(exc, "reason", exc))), verdict="error")
    with resp:
        resp.read(PROBE_MAX_BYTES)
        headers = {k.lower(): comment(v) for k, v in resp.headers.items() if k.lower() in CDN_HEADERS}
        return Probe(url, resp.status, headers)


def compare(p: Probe, rules: Rules) -> Probe:
    d = decide(rules, requests.build(url=_path_of(p.url)))
    p.expected = {"cached": d.cached, "rule": d.rule.name if d.rule else None, "headers": d.headers, "reason": d.reason}
    if p.error:
        return p
    got = p.headers.get("cache-control", "")
    want = d.headers.get("Cache-Control")
    says = p.cdn_says.lower()
    looks_cached = any(says.startswith(h) for h in _HIT) or (p.headers.get("age", "0") not in ("", "0"))
    if want is None:
        p.verdict, p.why = "agrees", "no rule matches; the rules leave this page to the origin"
    elif got == want:
        p.verdict, p.why = "agrees", f"Cache-Control is what rule {d.rule.name!r} says"
    elif not d.cached and looks_cached:
        p.verdict, p.why = "disagrees", f"the CDN served it from cache ({p.cdn_says}) but the rules say: {d.reason}"
    else:
        p.verdict = "disagrees"
        p.why = f"Cache-Control is {got or '(none)'!r}; rule {d.rule.name!r} says {want!r}"
    return p


def _path_of(url: str) -> str:
    path, query, _ = requests.parse_url(url)
    return path + (f"?{query}" if query else "")


def probe(urls: list[str], rules: Rules | None = None) -> list[Probe]:
    for u in urls:
        check_url(u)
    out = []
    for u in urls:
        p = fetch(u)
        out.append(compare(p, rules) if rules is not None else p)
    return out
