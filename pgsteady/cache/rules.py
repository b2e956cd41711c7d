"""The cache rules file: named rules with owners, bypasses defined once, and examples.

A TOML file kept in the site's repository (``cache-rules.toml``); ``pgsteady
cache new`` writes a commented template and docs/cache.md describes every
field. Everything is checked when the file is read, with one-line errors that
name the field. The values that reach a proxy configuration (names, patterns,
header and cookie names, match values) are held to small character sets here,
so that no target has to escape its way out of an injection: a generator may
trust what this module returns.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import durations
from ..errors import ConfigError, check_options


class RulesError(ConfigError):
    """A rules file that cannot be used as it is (exit 2)."""


NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_PATH_PATTERN = re.compile(r"^/[A-Za-z0-9/._~*-]*$")
_PARAM = re.compile(r"^[A-Za-z0-9_]{1,64}$")            # nginx reads them as $arg_<name>
_HEADER = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_COOKIE = re.compile(r"^[A-Za-z0-9_.-]{1,64}\*?$")      # a trailing * matches a prefix
_VALUE = re.compile(r"^[A-Za-z0-9 ._/+:=,@*-]{1,200}$")  # no quotes, ; { } $ \ or control characters
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
STORABLE = ("GET", "HEAD")  # what HTTP caches (and nginx's proxy_cache_methods) ever store
_ONE_LINE = re.compile(r"^[^\x00-\x1f\x7f]{0,1000}$")
MAX_TTL = 365 * 86400
BYPASS_KINDS = ("cookie", "header", "query", "path", "methods_other_than")

_TOP = {"site", "bypass", "rules"}
_SITE = {"name", "origin", "server_name", "listen"}
_BYPASS = {"why", *BYPASS_KINDS}
_RULE = {"name", "owner", "reason", "expect", "rollback", "match", "cache", "bypass", "must_cache", "must_not_cache"}
_MATCH = {"path", "methods", "query", "headers", "cookies"}
_CACHE = {"never", "cdn", "browser", "stale_while_revalidate", "stale_if_error", "vary"}
_EXAMPLE = {"url", "method", "cookies", "headers", "note"}


def ttl(value: Any, where: str) -> int:
    """Whole seconds from ``"30s"``, ``"10m"``, ``"1h"``, ``"7d"``, ``"2w"`` or a number (durations.seconds)."""
    return int(durations.seconds(value, where, maximum=MAX_TTL, whole=True, exc=RulesError))


def glob_regex(pattern: str) -> str:
    """The anchored regular expression of a path pattern: ``*`` is one path
    segment or part of one, ``**`` anything (slashes included)."""
    out = []
    for part in re.split(r"(\*\*|\*)", pattern):
        out.append(".*" if part == "**" else "[^/]*" if part == "*" else re.escape(part))
    return "^" + "".join(out) + "$"


@dataclass(frozen=True)
class Bypass:
    """A condition under which a rule's response is neither stored nor served from the cache."""

    name: str
    why: str
    kind: str                 # one of BYPASS_KINDS
    value: str | tuple[str, ...]

    def describe(self) -> str:
        if self.kind == "cookie":
            return f"the cookie {self.value} is sent"
        if self.kind == "header":
            return f"the header {self.value} is sent"
        if self.kind == "query":
            return f"the query has the parameter {self.value}"
        if self.kind == "path":
            return f"the path matches {self.value}"
        return f"the method is not {', '.join(self.value)}"


@dataclass(frozen=True)
class Match:
    paths: tuple[str, ...]
    methods: tuple[str, ...] | None            # None: any method
    query: dict[str, str] = field(default_factory=dict)    # name -> "*" (present) or an exact value
    headers: dict[str, str] = field(default_factory=dict)  # lower-case name -> "*" or value
    cookies: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Action:
    never: bool
    cdn: int = 0
    browser: int = 0
    stale_while_revalidate: int | None = None
    stale_if_error: int | None = None
    vary: tuple[str, ...] = ()


@dataclass(frozen=True)
class Example:
    url: str
    cached: bool
    method: str = "GET"
    cookies: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    note: str = ""

    def label(self) -> str:
        extra = [f"cookie {k}={v}" for k, v in self.cookies.items()] + [f"{k}: {v}" for k, v in self.headers.items()]
        head = self.url if self.method == "GET" else f"{self.method} {self.url}"
        return head + (f" ({', '.join(extra)})" if extra else "")


@dataclass(frozen=True)
class Rule:
    name: str
    owner: str
    reason: str
    expect: str
    rollback: str
    match: Match
    action: Action
    bypass: tuple[str, ...]
    examples: tuple[Example, ...]


@dataclass(frozen=True)
class Site:
    name: str = "site"
    origin: str = "http://127.0.0.1:8000"
    server_name: str = "_"
    listen: str = "80"


@dataclass
class Rules:
    path: Path
    site: Site
    bypasses: dict[str, Bypass]
    rules: list[Rule]

    def undefined_bypasses(self) -> list[tuple[str, str]]:
        """(rule, bypass) pairs where a rule names a bypass no [bypass.NAME] defines."""
        return [(r.name, b) for r in self.rules for b in r.bypass if b not in self.bypasses]


def load(path: str | Path) -> Rules:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise RulesError(f"cannot read rules file {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse(text, path)


def parse(text: str, path: Path = Path("cache-rules.toml")) -> Rules:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RulesError(f"{path} is not valid TOML: {exc}") from None
    where = str(path)
    _fields(data, _TOP, where)
    site = _site(_table(data, "site", where), where)
    raw_bypasses = _table(data, "bypass", where)
    bypasses = {name: _bypass(name, b, f"{where} [bypass.{name}]") for name, b in raw_bypasses.items()}
    raw_rules = data.get("rules", [])
    if isinstance(raw_rules, dict):
        raise RulesError(f"{where}: write each rule as [[rules]] (double brackets: a list of rules), not [rules]")
    if not isinstance(raw_rules, list) or not raw_rules:
        raise RulesError(f"{where}: no rules; add at least one [[rules]] table (pgsteady cache new writes a template)")
    rules = [_rule(r, i, where) for i, r in enumerate(raw_rules)]
    seen: set[str] = set()
    for r in rules:
        if r.name in seen:
            raise RulesError(f"{where}: two rules are named {r.name!r}; rule names must be unique")
        seen.add(r.name)
    return Rules(path, site, bypasses, rules)


def _fields(data: dict, allowed: set[str], where: str) -> None:
    check_options(data, allowed, where, what="field", exc=RulesError)  # the package's one did-you-mean


def _table(data: dict, key: str, where: str) -> dict:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise RulesError(f"{where}: {key} must be a table")
    return value


def _text(data: dict, key: str, where: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value.strip():
        raise RulesError(f"{where}: {key!r} is required (a non-empty string)")
    return value.strip()


def _name(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not NAME.match(value):
        raise RulesError(f"{where}: {what} {value!r} must be lower-case letters, digits, '_' or '-', starting with a letter")
    return value


def _site(data: dict, where: str) -> Site:
    _fields(data, _SITE, f"{where} [site]")
    site = Site(**{k: str(v) for k, v in data.items()})
    if not re.match(r"^https?://[A-Za-z0-9.-]+(:\d{1,5})?/?$", site.origin):
        raise RulesError(f"{where} [site]: origin {site.origin!r} must be http://host[:port] (no path)")
    if not re.match(r"^[A-Za-z0-9.*_-]{1,253}( [A-Za-z0-9.*_-]{1,253})*$", site.server_name):
        raise RulesError(f"{where} [site]: server_name {site.server_name!r} must be host names separated by spaces")
    if not re.match(r"^([0-9.]+:|\[[0-9a-fA-F:]+\]:)?\d{1,5}$", site.listen):
        raise RulesError(f"{where} [site]: listen {site.listen!r} must be a port or address:port")
    if not re.match(r"^[A-Za-z0-9._-]{1,100}$", site.name):
        raise RulesError(f"{where} [site]: name {site.name!r} must be letters, digits, '.', '_' or '-'")
    return site


def _bypass(name: str, data: Any, where: str) -> Bypass:
    _name(name, "bypass name", where)
    if not isinstance(data, dict):
        raise RulesError(f"{where} must be a table with why and one condition")
    _fields(data, _BYPASS, where)
    why = _text(data, "why", where)
    kinds = [k for k in BYPASS_KINDS if k in data]
    if len(kinds) != 1:
        raise RulesError(f"{where}: give exactly one condition ({', '.join(BYPASS_KINDS)}), found {len(kinds)}")
    kind, value = kinds[0], data[kinds[0]]
    if kind == "methods_other_than":
        return Bypass(name, why, kind, _methods(value, f"{where} methods_other_than"))
    if not isinstance(value, str):
        raise RulesError(f"{where}: {kind} must be a string")
    checks = {"cookie": (_COOKIE, "a cookie name (letters, digits, '_', '.', '-'; a trailing * for a prefix)"),
              "header": (_HEADER, "a header name (letters, digits, '-')"),
              "query": (_PARAM, "a query parameter name (letters, digits, '_')"),
              "path": (_PATH_PATTERN, "a path pattern like /admin/** (see docs/cache.md)")}
    rx, what = checks[kind]
    if not rx.match(value) or (kind == "path" and "***" in value):
        raise RulesError(f"{where}: {kind} {value!r} is not {what}")
    return Bypass(name, why, kind, value.lower() if kind == "header" else value)


def _methods(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(m, str) and m.upper() in METHODS for m in value):
        raise RulesError(f"{where} must be a list of HTTP methods from {', '.join(METHODS)}")
    return tuple(dict.fromkeys(m.upper() for m in value))


def _conditions(value: Any, rx: re.Pattern, what: str, where: str, lower: bool = False) -> dict[str, str]:
    if not isinstance(value, dict):
        raise RulesError(f"{where} must be a table of {what} = \"*\" (present) or an exact value")
    out = {}
    for k, v in value.items():
        if not rx.match(k) or k.endswith("*"):
            raise RulesError(f"{where}: {k!r} is not a valid {what}")
        if not isinstance(v, str) or not _VALUE.match(v):
            raise RulesError(f"{where}: value of {k!r} must be \"*\" or text without quotes, ';', '{{', '}}', '$' or '\\'")
        out[k.lower() if lower else k] = v
    return out


def _rule(data: Any, i: int, where: str) -> Rule:
    here = f"{where} [[rules]] #{i + 1}"
    if not isinstance(data, dict):
        raise RulesError(f"{here} must be a table")
    name = _name(data.get("name"), "rule name", here)
    here = f"{where} rule {name!r}"
    _fields(data, _RULE, here)
    text = {k: _text(data, k, here) for k in ("owner", "reason", "expect", "rollback")}
    match = data.get("match")
    if not isinstance(match, dict) or "path" not in match:
        raise RulesError(f"{here}: match.path is required (for example match = {{ path = \"/posts/*\" }})")
    _fields(match, _MATCH, f"{here} match")
    paths = match["path"] if isinstance(match["path"], list) else [match["path"]]
    if not paths:
        raise RulesError(f"{here}: match.path is an empty list; give at least one pattern")
    for p in paths:
        if not isinstance(p, str) or not _PATH_PATTERN.match(p) or "***" in p:
            raise RulesError(f"{here}: match.path {p!r} is not a path pattern; start with / and use letters, "
                             "digits, / . _ ~ - and * (one segment) or ** (anything)")
    methods = _methods(match["methods"], f"{here} match.methods") if "methods" in match else None
    m = Match(tuple(paths), methods,
              _conditions(match.get("query", {}), _PARAM, "query parameter", f"{here} match.query"),
              _conditions(match.get("headers", {}), _HEADER, "header name", f"{here} match.headers", lower=True),
              _conditions(match.get("cookies", {}), _COOKIE, "cookie name", f"{here} match.cookies"))
    bypass = data.get("bypass", [])
    if not isinstance(bypass, list) or not all(isinstance(b, str) for b in bypass):
        raise RulesError(f"{here}: bypass must be a list of bypass names defined under [bypass.NAME]")
    examples = tuple(_example(e, True, f"{here} must_cache") for e in _list(data, "must_cache", here)) + \
        tuple(_example(e, False, f"{here} must_not_cache") for e in _list(data, "must_not_cache", here))
    return Rule(name, text["owner"], text["reason"], text["expect"], text["rollback"], m,
                _action(data.get("cache"), f"{here} cache"), tuple(bypass), examples)


def _list(data: dict, key: str, where: str) -> list:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise RulesError(f"{where}: {key} must be a list of URLs or {{ url = ..., cookies = {{...}} }} tables")
    return value


def _action(data: Any, where: str) -> Action:
    if not isinstance(data, dict):
        raise RulesError(f"{where} is required: {{ never = true }} or {{ cdn = \"10m\", browser = \"1m\" }}")
    _fields(data, _CACHE, where)
    if data.get("never") is True:
        extra = sorted(set(data) - {"never"})
        if extra:
            raise RulesError(f"{where}: never = true cannot be combined with {extra[0]}; remove one of them")
        return Action(never=True)
    if "never" in data and data["never"] is not False:
        raise RulesError(f"{where}: never must be true or false")
    if "cdn" not in data:
        raise RulesError(f"{where}: give cdn (how long the proxy keeps it) or never = true")
    vary = data.get("vary", [])
    if not isinstance(vary, list) or not all(isinstance(v, str) and _HEADER.match(v) for v in vary):
        raise RulesError(f"{where}: vary must be a list of header names")
    opt = {k: ttl(data[k], f"{where}.{k}") for k in ("stale_while_revalidate", "stale_if_error") if k in data}
    return Action(False, ttl(data["cdn"], f"{where}.cdn"), ttl(data.get("browser", 0), f"{where}.browser"),
                  opt.get("stale_while_revalidate"), opt.get("stale_if_error"), tuple(vary))


def _example(data: Any, cached: bool, where: str) -> Example:
    if isinstance(data, str):
        data = {"url": data}
    if not isinstance(data, dict):
        raise RulesError(f"{where}: each example is a URL or a table {{ url = ..., cookies = {{...}}, headers = {{...}} }}")
    _fields(data, _EXAMPLE, where)
    from .requests import parse_url  # the one reader of request URLs

    url = data.get("url")
    if not isinstance(url, str):
        raise RulesError(f"{where}: an example needs url")
    parse_url(url, f"{where} url")
    method = str(data.get("method", "GET")).upper()
    if method not in METHODS:
        raise RulesError(f"{where}: method {method!r} is not one of {', '.join(METHODS)}")
    cookies, headers = data.get("cookies", {}), data.get("headers", {})
    if not isinstance(cookies, dict) or not all(
            isinstance(k, str) and re.match(r"^[A-Za-z0-9_.-]{1,64}$", k) and isinstance(v, str) and _ONE_LINE.match(v)
            and ";" not in v for k, v in cookies.items()):
        raise RulesError(f"{where} ({url}): cookies must be a table of name = \"value\" (one line, no ';')")
    if not isinstance(headers, dict) or not all(isinstance(k, str) and _HEADER.match(k) and isinstance(v, str)
                                                and _ONE_LINE.match(v) for k, v in headers.items()):
        raise RulesError(f"{where} ({url}): headers must be a table of Name = \"value\" (one line)")
    return Example(url, cached, method, dict(cookies), dict(headers), str(data.get("note", "")))
