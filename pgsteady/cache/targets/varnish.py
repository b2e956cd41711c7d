"""Varnish: a VCL 4.1 file, one ``if`` block per rule in vcl_recv, TTLs in vcl_backend_response.

Varnish sees the raw URL, not a decoded one, so a path with a percent sign,
a dot segment or a double slash is passed to the origin uncached rather than
matched: otherwise ``/%61dmin`` would miss the admin rule on its way to an
origin that decodes it. PURGE purges a URL; BAN with ``X-Purge-Keys: k1 k2``
bans every object whose Surrogate-Key header holds one of those keys. Both
are accepted only from the purge addresses.
"""

from __future__ import annotations

from ...errors import ConfigError
from ..evaluate import NO_STORE, cache_control
from ..rules import Bypass, Rule, Rules, glob_regex
from . import Options, comment, pcre_literal

NAME = "varnish"
DESCRIPTION = "a VCL 4.1 file for Varnish (PURGE and surrogate-key BAN included)"


def _q(text: str) -> str:
    if '"' in text or any(not c.isprintable() for c in text):
        raise ValueError(f"refusing to write {text!r} into VCL")
    return f'"{text}"'


def _arg(name: str, rest: str = "(=|&|$)") -> str:
    return rf"[?&](?i:{name}){rest}"


def _cookie(name: str, value: str = "*") -> str:
    n = pcre_literal(name.rstrip("*")) + ("[^=;]*" if name.endswith("*") else "")
    tail = r"\s*[^;\s]" if value == "*" else r"\s*" + pcre_literal(value) + r"\s*(;|$)"
    return rf"(^|;)\s*(?i:{n})={tail}"


def _header(name: str) -> str:
    return f"req.http.{name}"


def _bypass(b: Bypass) -> str:
    if b.kind == "cookie":
        return f"req.http.Cookie ~ {_q(_cookie(b.value))}"
    if b.kind == "header":
        return f"{_header(b.value)}"
    if b.kind == "query":
        return f"req.url ~ {_q(_arg(b.value))}"
    if b.kind == "path":
        return f"req.http.X-Pgs-Path ~ {_q(glob_regex(b.value))}"
    return "(" + " && ".join(f'req.method != "{m}"' for m in b.value) + ")"


def _match(rule: Rule) -> str:
    m = rule.match
    conds = ["(" + " || ".join(f"req.http.X-Pgs-Path ~ {_q(glob_regex(p))}" for p in m.paths) + ")"]
    if m.methods is not None:
        conds.append("(" + " || ".join(f'req.method == "{x}"' for x in m.methods) + ")")
    for name, v in m.query.items():
        conds.append(f"req.url ~ {_q(_arg(name) if v == '*' else _arg(name, '=' + pcre_literal(v) + '(&|$)'))}")
    for name, v in m.headers.items():
        conds.append(_header(name) if v == "*" else f"{_header(name)} ~ {_q('^' + pcre_literal(v) + '$')}")
    for name, v in m.cookies.items():
        conds.append(f"req.http.Cookie ~ {_q(_cookie(name, v))}")
    return " && ".join(conds)


def compile(rules: Rules, opts: Options) -> str:
    origin = (opts.origin or rules.site.origin).rstrip("/")
    if origin.startswith("https://"):
        raise ConfigError("Varnish cannot reach an https origin by itself; put a TLS proxy in between and give its http:// address")
    origin = origin.split("://", 1)[1]
    host, _, port = origin.partition(":")
    acl = " ".join(_q(ip) + ";" for ip in opts.purge_from)
    recv = ['    if (req.method == "PURGE" || req.method == "BAN") {',
            "        if (client.ip !~ pgsteady_purge) { return (synth(403, \"Forbidden\")); }",
            '        if (req.method == "PURGE") { return (purge); }',
            '        if (req.http.X-Purge-Keys !~ "^[A-Za-z0-9_.:-]+( [A-Za-z0-9_.:-]+)*$") { return (synth(400, "Bad keys")); }',
            '        ban("obj.http.Surrogate-Key ~ (^|\\s)(" + regsuball(req.http.X-Purge-Keys, " ", "|") + ")(\\s|$)");',
            '        return (synth(200, "Banned"));', "    }",
            '    unset req.http.X-Pgs-Rule;', '    unset req.http.X-Pgs-Bypass;',
            '    set req.http.X-Pgs-Path = regsub(req.url, "\\?.*$", "");',
            '    if (req.http.X-Pgs-Path ~ "%|//|/\\.\\.?(/|$)") { return (pass); }',
            '    if (req.method != "GET" && req.method != "HEAD") { return (pass); }',
            '    if (req.url ~ "[?&][^=&]*%") { return (pass); }']
    backend, deliver = [], []
    for rule in rules.rules:
        recv += [f"    # rule {rule.name} · owner {comment(rule.owner)} · {comment(rule.reason)}",
                 f"    if ({_match(rule)}) {{", f'        set req.http.X-Pgs-Rule = "{rule.name}";']
        if rule.action.never:
            recv += ["        return (pass);", "    }"]
            deliver += [f'    if (req.http.X-Pgs-Rule == "{rule.name}") {{ set resp.http.Cache-Control = {_q(NO_STORE)}; }}']
            continue
        for name in rule.bypass:
            if name in rules.bypasses:
                b = rules.bypasses[name]
                recv += [f"        # bypass {name}: {comment(b.why, 120)}",
                         f"        if ({_bypass(b)}) {{ set req.http.X-Pgs-Bypass = \"1\"; return (pass); }}"]
        recv += ["        return (hash);", "    }"]
        a, headers = rule.action, cache_control(rule.action)
        backend += [f'    if (bereq.http.X-Pgs-Rule == "{rule.name}") {{',
                    f"        set beresp.ttl = {a.cdn}s;",
                    f"        set beresp.grace = {a.stale_while_revalidate or 0}s;",
                    f"        set beresp.keep = {a.stale_if_error or 0}s;",
                    "        if (beresp.http.Set-Cookie) { set beresp.uncacheable = true; }", "    }"]
        deliver += [f'    if (req.http.X-Pgs-Rule == "{rule.name}") {{',
                    f"        set resp.http.Cache-Control = {_q(headers['Cache-Control'])};",
                    *([f"        set resp.http.Vary = {_q(headers['Vary'])};"] if "Vary" in headers else []),
                    f'        if (req.http.X-Pgs-Bypass) {{ set resp.http.Cache-Control = {_q(NO_STORE)}; }}', "    }"]
    vary = sorted({h for r in rules.rules for h in r.action.vary})
    return "\n".join([
        f"# Generated by `pgsteady cache compile --target varnish` from {comment(str(rules.path))}. Do not edit by hand.",
        "vcl 4.1;", "", f"backend default {{ .host = {_q(host)}; .port = {_q(port or '80')}; }}", "",
        f"acl pgsteady_purge {{ {acl} }}", "", "sub vcl_recv {", *recv, "    return (pass);  # no rule matched", "}", "",
        "sub vcl_hash {", "    hash_data(req.url);", "    if (req.http.host) { hash_data(req.http.host); }",
        *(f"    hash_data(req.http.{h});" for h in vary), "    return (lookup);", "}", "",
        "sub vcl_backend_response {", *backend, "}", "",
        "sub vcl_deliver {", *deliver, "    if (obj.hits > 0) { set resp.http.X-Cache = \"HIT\"; } else { set resp.http.X-Cache = \"MISS\"; }",
        "    unset resp.http.Surrogate-Key;", "}", ""])
