"""Headers: what each --url's response tells a browser (and a CDN) to do.

One function per header question, each giving one result per URL (cookies:
one per cookie). Plain HTTP on a loopback address is a development setup:
the headers are still judged, and the missing transport security is a
warning rather than a failure.
"""

from __future__ import annotations

from typing import Iterator

from .report import FAIL, PASS, SKIP, WARN, Result
from .settings import HSTS_MIN_MAX_AGE, secret_key_re
from .snapshot import Snapshot
from .web import Response

AREA = "headers"
_GOOD_REFERRER = {"no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin", "origin",
                  "origin-when-cross-origin"}


def directives(value: str | None, sep: str = ";") -> dict[str, str]:
    """Header directives (lower-cased names): 'max-age=5; includeSubDomains' -> {'max-age': '5', ...}."""
    out: dict[str, str] = {}
    for part in (value or "").split(sep):
        name, _, arg = part.strip().partition("=")
        if name:
            out.setdefault(name.lower(), arg.strip().strip('"'))
    return out


def csp_directives(value: str | None) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in (value or "").split(";"):
        words = part.split()
        if words:
            out.setdefault(words[0].lower(), [w.lower() for w in words[1:]])
    return out


def hsts(snap: Snapshot) -> Iterator[Result]:
    for r in snap.responses:
        value = r.header("Strict-Transport-Security")
        evidence = {"header": value, "scheme": r.scheme}
        if r.scheme == "http" and not r.loopback:
            yield Result("hsts", AREA, FAIL, r.url, f"{r.url} is served over plain HTTP",
                         fix="serve it over HTTPS only, redirect HTTP to HTTPS and send Strict-Transport-Security",
                         evidence=evidence)
            continue
        if value is None:
            yield Result("hsts", AREA, WARN if r.scheme == "http" else FAIL, r.url,
                         "no Strict-Transport-Security header" + (" (plain HTTP on loopback: it would not apply "
                                                                  "anyway)" if r.scheme == "http" else ""),
                         fix=f"send Strict-Transport-Security: max-age={HSTS_MIN_MAX_AGE}; includeSubDomains",
                         evidence=evidence)
            continue
        age = directives(value.split(",")[0], ";").get("max-age", "")
        seconds = int(age) if age.isdigit() else -1
        if seconds < HSTS_MIN_MAX_AGE:
            yield Result("hsts", AREA, WARN, r.url,
                         f"Strict-Transport-Security max-age is {age or 'missing'}, under {HSTS_MIN_MAX_AGE} s",
                         fix=f"send Strict-Transport-Security: max-age={HSTS_MIN_MAX_AGE}; includeSubDomains",
                         evidence=evidence)
        else:
            yield Result("hsts", AREA, PASS, r.url, f"Strict-Transport-Security max-age={seconds}", evidence=evidence)


def csp(snap: Snapshot) -> Iterator[Result]:
    fix = "send Content-Security-Policy: default-src 'self'; frame-ancestors 'none'; object-src 'none'"
    for r in snap.responses:
        value = r.header("Content-Security-Policy")
        evidence = {"header": value, "report_only": r.header("Content-Security-Policy-Report-Only")}
        if value is None:
            only = evidence["report_only"] is not None
            yield Result("csp", AREA, WARN if only else FAIL, r.url,
                         "only Content-Security-Policy-Report-Only: nothing is enforced" if only
                         else "no Content-Security-Policy header: injected scripts run", fix=fix, evidence=evidence)
            continue
        d = csp_directives(value)
        scripts = d.get("script-src", d.get("default-src"))
        if scripts is None:
            yield Result("csp", AREA, WARN, r.url, "the Content-Security-Policy has neither script-src nor "
                         "default-src: it does not restrict scripts", fix=fix, evidence=evidence)
            continue
        loose = [s for s in scripts if s in ("'unsafe-inline'", "'unsafe-eval'", "*", "http:", "https:", "data:")]
        if "'unsafe-inline'" in loose and any(s.startswith(("'nonce-", "'sha")) for s in scripts):
            loose.remove("'unsafe-inline'")  # ignored by browsers that know nonces and hashes
        if loose:
            yield Result("csp", AREA, WARN, r.url, f"the Content-Security-Policy allows scripts from {' '.join(loose)}",
                         fix="remove them; use nonces or hashes for inline scripts", evidence=evidence)
        else:
            yield Result("csp", AREA, PASS, r.url, "a Content-Security-Policy restricts scripts", evidence=evidence)


def nosniff(snap: Snapshot) -> Iterator[Result]:
    for r in snap.responses:
        value = r.header("X-Content-Type-Options")
        ok = (value or "").strip().lower() == "nosniff"
        yield Result("nosniff", AREA, PASS if ok else FAIL, r.url,
                     "X-Content-Type-Options: nosniff" if ok else
                     "no X-Content-Type-Options: nosniff: a browser may run an upload as a script",
                     fix=None if ok else "send X-Content-Type-Options: nosniff", evidence={"header": value})


def framing(snap: Snapshot) -> Iterator[Result]:
    fix = "send Content-Security-Policy: frame-ancestors 'none' (or 'self'), and X-Frame-Options: DENY for old browsers"
    for r in snap.responses:
        ancestors = csp_directives(r.header("Content-Security-Policy")).get("frame-ancestors")
        xfo = (r.header("X-Frame-Options") or "").strip().upper()
        evidence = {"frame_ancestors": ancestors, "x_frame_options": xfo or None}
        if ancestors is not None:
            status = FAIL if "*" in ancestors else PASS
            yield Result("framing", AREA, status, r.url,
                         f"frame-ancestors {' '.join(ancestors) or '(empty)'}"
                         + (": any site may frame it (clickjacking)" if status == FAIL else ""),
                         fix=fix if status == FAIL else None, evidence=evidence)
        elif xfo in ("DENY", "SAMEORIGIN"):
            yield Result("framing", AREA, PASS, r.url, f"X-Frame-Options: {xfo}", evidence=evidence)
        else:
            yield Result("framing", AREA, FAIL, r.url,
                         "neither frame-ancestors nor X-Frame-Options: any site may frame it (clickjacking)",
                         fix=fix, evidence=evidence)


def referrer_policy(snap: Snapshot) -> Iterator[Result]:
    for r in snap.responses:
        value = r.header("Referrer-Policy")
        # Browsers apply the last policy they understand.
        policy = [p.strip().lower() for p in (value or "").split(",") if p.strip()]
        last = policy[-1] if policy else None
        if last in _GOOD_REFERRER:
            yield Result("referrer_policy", AREA, PASS, r.url, f"Referrer-Policy: {last}", evidence={"header": value})
        else:
            yield Result("referrer_policy", AREA, WARN, r.url,
                         f"Referrer-Policy is {last}: full URLs (with their query strings) go to other sites"
                         if last else "no Referrer-Policy header",
                         fix="send Referrer-Policy: strict-origin-when-cross-origin (or no-referrer)",
                         evidence={"header": value})


def parse_cookie(header: str) -> tuple[str, dict[str, str]]:
    """(name, {attribute: value}) of one Set-Cookie header; attribute names lower-cased."""
    first, *attrs = header.split(";")
    name = first.partition("=")[0].strip()
    out = {}
    for attr in attrs:
        key, _, value = attr.strip().partition("=")
        if key:
            out[key.strip().lower()] = value.strip()
    return name, out


def cookies(snap: Snapshot) -> Iterator[Result]:
    rx = secret_key_re(snap.secret_pattern)
    for r in snap.responses:
        set_cookies = r.all("Set-Cookie")
        if not set_cookies:
            yield Result("cookies", AREA, PASS, r.url, "sets no cookie")
            continue
        for header in set_cookies:
            name, attrs = parse_cookie(header)
            subject = f"{r.url} cookie {name}"
            found = []
            secure_needed = r.scheme == "https" or not r.loopback
            if "secure" not in attrs:
                found.append((FAIL if secure_needed else WARN, "no Secure: it is also sent over plain HTTP"))
            if "httponly" not in attrs:
                found.append((FAIL if rx.search(name) else WARN, "no HttpOnly: page scripts can read it"))
            same = attrs.get("samesite", "").lower()
            if not same:
                found.append((WARN, "no SameSite: the browser's default applies"))
            elif same == "none" and "secure" not in attrs:
                found.append((FAIL, "SameSite=None without Secure"))
            evidence = {"attributes": sorted(attrs)}  # the value is never kept
            if found:
                status = FAIL if any(s == FAIL for s, _ in found) else WARN
                yield Result("cookies", AREA, status, subject, "; ".join(t for _, t in found),
                             fix="set it with Secure; HttpOnly; SameSite=Lax (or Strict)", evidence=evidence)
            else:
                yield Result("cookies", AREA, PASS, subject, f"Secure, HttpOnly, SameSite={attrs['samesite']}",
                             evidence=evidence)


def publicly_cacheable(r: Response) -> bool:
    """Whether a shared cache (a CDN) may store this response for everyone."""
    cc = directives(r.header("Cache-Control"), ",")
    if {"private", "no-store", "no-cache"} & set(cc):
        return False
    if "public" in cc:
        return True
    for name in ("s-maxage", "max-age"):
        value = cc.get(name, "")
        if value.isdigit() and int(value) > 0:
            return True
    return False


def cacheable_cookie(snap: Snapshot) -> Iterator[Result]:
    for r in snap.responses:
        cc = r.header("Cache-Control")
        if not r.all("Set-Cookie"):
            continue  # nothing to leak; `cookies` already says "sets no cookie"
        if publicly_cacheable(r):
            yield Result("cacheable_cookie", AREA, FAIL, r.url,
                         f"the page sets a cookie and is publicly cacheable (Cache-Control: {cc}): a CDN can serve "
                         "one visitor's cookie to everyone",
                         fix="send Cache-Control: private, no-store on responses that set cookies, or bypass the "
                             "cache for them in the CDN's rules",
                         evidence={"cache_control": cc})
        else:
            yield Result("cacheable_cookie", AREA, PASS, r.url,
                         f"the page sets a cookie and is not publicly cacheable (Cache-Control: {cc})",
                         evidence={"cache_control": cc})


# HOOK(cache rules): `--cache-rules FILE` names the CDN's rules file, which
# pgsteady/cache/ reads (built separately; nothing here imports it yet). To
# connect them: read the file once in runner.gather() (the cache branch has
# rules.load(path) and evaluate.decide(rules, request)), keep the decisions
# per --url in the Snapshot, and here FAIL each response that sets a cookie
# when the rules would cache that request for everyone (no bypass fires on
# the cookie). Until then this says that it did not look, so no one reads
# silence as a pass.
def cache_rules(snap: Snapshot) -> Iterator[Result]:
    if snap.cache_rules is None:
        return
    yield Result("cache_rules", AREA, SKIP, snap.cache_rules,
                 "the cache rules were not compared with the responses: this pgsteady cannot read rules files yet")
