"""nginx: an ``http {}`` include with one location per rule.

How the rules become nginx (docs/cache.md has the long form):

    request ──> location / ── set $pgs_path $uri (the path before our rewrite)
                    │         rewrite to /.pgsteady/rule/<first rule that matches>
                    ▼
    map blocks: each condition of each rule is a 0/1 variable ($pgs_rN_...),
    $pgs_rN is their AND, and $pgs_rule is the first N whose $pgs_rN is 1
    (a map tries its regular expressions in the order written).
                    │
                    ▼
    location = /.pgsteady/rule/<name> (internal): the rule's proxy_cache_valid,
    proxy_cache_bypass/proxy_no_cache from $pgs_rN_nocache (its bypasses, a
    method other than GET/HEAD, a percent-encoded parameter name), and its
    Cache-Control/Vary. PURGE requests from purge_from reach the same location
    and purge the same cache key (libnginx-mod-http-cache-purge).

Every value written here was restricted by rules.py to characters that cannot
end a string, a directive or a block, and is double-quoted as well; free text
only appears in comments, flattened to one line.
"""

from __future__ import annotations

from ..evaluate import NO_STORE, cache_control
from ..rules import Bypass, Rule, Rules, glob_regex
from . import Options, comment, pcre_literal

NAME = "nginx"
DESCRIPTION = "an include for nginx's http {} block (proxy_cache, one location per rule)"
ZONE = "pgsteady"


def _origin(rules: Rules, opts: Options) -> tuple[str, str]:
    """(scheme, host:port) of the origin."""
    scheme, _, hostport = (opts.origin or rules.site.origin).rstrip("/").partition("://")
    return scheme, hostport if ":" in hostport else f"{hostport}:{443 if scheme == 'https' else 80}"


def _pass(rules: Rules, opts: Options) -> list[str]:
    """The hand-off to the origin, inside a location (so nothing leaks into the user's other servers)."""
    scheme, hostport = _origin(rules, opts)
    tls = ["        proxy_ssl_server_name on;", f"        proxy_ssl_name {hostport.rsplit(':', 1)[0]};"]
    return (tls if scheme == "https" else []) + [f"        proxy_pass {scheme}://pgsteady_origin$request_uri;"]


def _q(text: str) -> str:
    if '"' in text or any(not c.isprintable() for c in text):  # rules.py refuses these; never write one
        raise ValueError(f"refusing to write {text!r} into an nginx configuration")
    return f'"{text}"'


def _flag(source: str, var: str, regex: str | None = None, present: bool = False) -> str:
    if present:
        return f'map {source} {var} {{ "" 0; default 1; }}'
    return f"map {source} {var} {{ {_q('~' + regex)} 1; default 0; }}"


def _path_flag(patterns: tuple[str, ...] | str, var: str) -> str:
    pats = (patterns,) if isinstance(patterns, str) else patterns
    return f"map $pgs_path {var} {{ {' '.join(_q('~' + glob_regex(p)) + ' 1;' for p in pats)} default 0; }}"


def _cookie_regex(name: str, value: str = "*") -> str:
    star = name.endswith("*")
    n = pcre_literal(name.rstrip("*")) + ("[^=;]*" if star else "")
    tail = r"\s*[^;\s]" if value == "*" else r"\s*" + pcre_literal(value) + r"\s*(;|$)"
    return rf"(^|;)\s*(?i:{n})={tail}"


def _header_var(name: str) -> str:
    return "$http_" + name.lower().replace("-", "_")


def _condition(kind: str, name: str, value: str, var: str) -> str:
    if kind == "cookie":
        return _flag("$http_cookie", var, _cookie_regex(name, value))
    if kind == "query" and value == "*":
        return _flag("$args", var, rf"(^|&)(?i:{name})(=|&|$)")
    source = f"$arg_{name}" if kind == "query" else _header_var(name)
    if value == "*":
        return _flag(source, var, present=True)
    return _flag(source, var, "^" + pcre_literal(value) + "$")


def _bypass(b: Bypass, var: str) -> str:
    if b.kind == "cookie":
        return _flag("$http_cookie", var, _cookie_regex(b.value))
    if b.kind == "header":
        return _flag(_header_var(b.value), var, present=True)
    if b.kind == "query":  # present at all, with or without a value ($arg_ would miss ?preview)
        return _flag("$args", var, rf"(^|&)(?i:{b.value})(=|&|$)")
    if b.kind == "path":
        return _path_flag(b.value, var)
    allowed = " ".join(f"{m} 0;" for m in b.value)
    return f"map $request_method {var} {{ {allowed} PURGE 0; default 1; }}"


def _rule_maps(i: int, rule: Rule) -> list[str]:
    m, v = rule.match, f"$pgs_r{i}"
    out = [_path_flag(m.paths, f"{v}_path")]
    parts = [f"{v}_path"]
    if m.methods is not None:
        out.append(f"map $request_method {v}_method {{ {' '.join(f'{x} 1;' for x in m.methods)} PURGE 1; default 0; }}")
        parts.append(f"{v}_method")
    conds = [("query", k, x) for k, x in m.query.items()] + [("header", k, x) for k, x in m.headers.items()] + \
        [("cookie", k, x) for k, x in m.cookies.items()]
    for j, (kind, name, value) in enumerate(conds):
        out.append(_condition(kind, name, value, f"{v}_c{j}"))
        parts.append(f"{v}_c{j}")
    out.append(f"map {_q(''.join(parts))} {v} {{ {_q('1' * len(parts))} 1; default 0; }}")
    return out


def _location(i: int, rule: Rule, rules: Rules, opts: Options) -> list[str]:
    a, v = rule.action, f"$pgs_r{i}"
    head = [f"    # rule {rule.name} · owner {comment(rule.owner)}", f"    # reason: {comment(rule.reason)}",
            f"    # expect: {comment(rule.expect)}", f"    # rollback: {comment(rule.rollback)}",
            f"    location = /.pgsteady/rule/{rule.name} {{", "        internal;"]
    common = ["        proxy_hide_header Cache-Control;", "        proxy_hide_header Expires;",
              "        proxy_set_header Host $host;"]
    if a.never:
        return head + common + [f"        add_header Cache-Control {_q(NO_STORE)} always;",
                                *_pass(rules, opts), "    }", ""]
    headers = cache_control(a)
    vary_key = "".join(f"|{'$pgs_ae' if h.lower() == 'accept-encoding' else _header_var(h)}" for h in a.vary)
    body = [f"        proxy_cache {ZONE};",
            f"        proxy_cache_key {_q('$scheme://$host$request_uri' + vary_key)};",
            f"        proxy_cache_valid 200 203 301 308 {a.cdn}s;",
            "        proxy_cache_lock on;",
            # The rules decide the lifetime, not the origin; a response that sets a cookie is still never stored.
            "        proxy_ignore_headers Cache-Control Expires X-Accel-Expires Vary;",
            f"        proxy_cache_bypass {v}_nocache;", f"        proxy_no_cache {v}_nocache;"]
    stale = (["updating"] if a.stale_while_revalidate else []) + \
        (["error", "timeout", "http_500", "http_502", "http_503", "http_504"] if a.stale_if_error else [])
    if stale:
        body.append(f"        proxy_cache_use_stale {' '.join(stale)};")
    if a.stale_while_revalidate:
        body.append("        proxy_cache_background_update on;")
    if any(h.lower() == "accept-encoding" for h in a.vary):
        body.append("        proxy_set_header Accept-Encoding $pgs_ae;")
    body += [f"        add_header Cache-Control {v}_cc always;"]
    if "Vary" in headers:
        body.append(f"        add_header Vary {_q(headers['Vary'])} always;")
    body += ["        add_header X-Cache $upstream_cache_status always;",
             *_pass(rules, opts), "    }", ""]
    if opts.purge_module:  # the module's same-location form (PURGE in this block) crashes Debian's 2.3 build
        body += [f"    # PURGE of a URL that rule {rule.name} caches: the same key as above",
                 f"    location = /.pgsteady/purge/rule/{rule.name} {{", "        internal;",
                 *(f"        allow {ip};" for ip in opts.purge_from), "        deny all;",
                 f"        proxy_cache_purge {ZONE} {_q('$scheme://$host$request_uri' + vary_key)};", "    }", ""]
    return head + common + body


def compile(rules: Rules, opts: Options) -> str:
    site = rules.site
    hostport = _origin(rules, opts)[1]
    lines = [f"# Generated by `pgsteady cache compile --target nginx` from {comment(str(rules.path))}.",
             "# Do not edit by hand: change the rules file, then `pgsteady cache check` and `cache test` it.",
             "# Include inside the http {} block. docs/cache.md explains each part.", "",
             f"proxy_cache_path {_q(opts.cache_dir)} levels=1:2 keys_zone={ZONE}:10m max_size=1g inactive=7d use_temp_path=off;",
             f"upstream pgsteady_origin {{ server {hostport}; }}",
             "",
             "# Requests no rule may store: a method other than GET/HEAD, a percent-encoded parameter name.",
             "map $request_method $pgs_unstorable { GET 0; HEAD 0; PURGE 0; default 1; }",
             "# A PURGE request goes to the purge location of the rule that caches its URL.",
             'map $request_method $pgs_op { PURGE "purge/"; default ""; }',
             _flag("$args", "$pgs_encoded", r"(^|&)[^=&]*%"),
             '# Accept-Encoding reduced to the two variants the cache keeps (and the origin is asked for).',
             'map $http_accept_encoding $pgs_ae { "~*gzip" "gzip"; default ""; }', ""]
    names = list(rules.bypasses)
    for k, name in enumerate(names, 1):
        b = rules.bypasses[name]
        lines += [f"# bypass {name}: {comment(b.describe())} · why: {comment(b.why)}", _bypass(b, f"$pgs_b{k}")]
    lines.append("")
    for i, rule in enumerate(rules.rules, 1):
        lines.append(f"# rule {rule.name} · owner {comment(rule.owner)} · match {comment(' or '.join(rule.match.paths))}")
        lines += _rule_maps(i, rule)
        if not rule.action.never:
            flags = "".join(f"$pgs_b{names.index(b) + 1}" for b in rule.bypass if b in names)
            lines.append(f'map "{flags}$pgs_unstorable$pgs_encoded" $pgs_r{i}_nocache {{ "~1" 1; default 0; }}')
            cc = cache_control(rule.action)["Cache-Control"]
            lines.append(f"map $pgs_r{i}_nocache $pgs_r{i}_cc {{ 1 {_q(NO_STORE)}; default {_q(cc)}; }}")
        lines.append("")
    flags = "".join(f"$pgs_r{i}" for i in range(1, len(rules.rules) + 1))
    lines.append("# The first rule whose match holds (map regexes are tried in the order written).")
    lines.append(f"map {_q(flags)} $pgs_dest {{")
    for i, rule in enumerate(rules.rules):
        lines.append(f"    {_q('~^' + '0' * i + '1')} rule/{rule.name};")
    lines += ["    default none;", "}", "", "server {",
              f"    listen {opts.listen or site.listen};", f"    server_name {site.server_name};", "",
              "    location / {", "        set $pgs_path $uri;", "        rewrite ^ /.pgsteady/$pgs_op$pgs_dest last;", "    }", "",
              "    # anything else under /.pgsteady/ (a PURGE of a URL no rule caches): nothing to do",
              "    location /.pgsteady/ {", "        internal;", "        return 404;", "    }", "",
              "    # no rule matched: passed to the origin, never stored",
              "    location = /.pgsteady/none {", "        internal;", "        proxy_set_header Host $host;",
              *_pass(rules, opts), "    }", ""]
    for i, rule in enumerate(rules.rules, 1):
        lines += _location(i, rule, rules, opts)
    lines.append("}")
    return "\n".join(lines) + "\n"
