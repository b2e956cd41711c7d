"""`pgsteady cache new|check|explain|compile|test|probe`: cache rules for the CDN."""

from __future__ import annotations

import re
from pathlib import Path

import click

from ..cache import evaluate, probe as probes, requests, rules as rules_mod, targets
from ..cache.targets import comment
from ..cache.template import template
from ..errors import ConfigError
from .base import echo_json, json_option

FILE = click.argument("file", type=click.Path(dir_okay=False, path_type=Path))


def _pairs(values: tuple[str, ...], sep: str, what: str) -> dict[str, str]:
    out = {}
    for v in values:
        k, ok, val = v.partition(sep)
        if not ok or not k.strip():
            raise ConfigError(f"--{what} {v!r} must be name{sep}value")
        out[k.strip()] = val.strip()
    return out


def register(cli: click.Group) -> None:
    @cli.group()
    def cache() -> None:
        """Cache rules for the proxy or CDN in front of the site (docs/cache.md)."""

    @cache.command("new")
    @click.argument("file", type=click.Path(dir_okay=False, path_type=Path), default="cache-rules.toml")
    @click.option("--site", default="example.com", help="The site's name, used in comments.")
    @click.option("--force", is_flag=True, help="Overwrite an existing file.")
    def new(file: Path, site: str, force: bool) -> None:
        """Write a commented rules template for a content site."""
        if not re.match(r"^[A-Za-z0-9._-]{1,100}$", site):
            raise ConfigError(f"--site {site!r} must be a host name (letters, digits, '.', '_', '-')")
        if file.exists() and not force:
            raise ConfigError(f"{file} exists; pick another name or pass --force to overwrite it")
        file.write_text(template(str(file), site))
        click.echo(f"wrote {file}; next: pgsteady cache check {file}")

    @cache.command("check")
    @FILE
    @json_option
    def check(file: Path, as_json: bool) -> int:
        """Validate the rules and evaluate every example (exit 1 on findings)."""
        rules = rules_mod.load(file)
        findings, results = evaluate.check(rules)
        if as_json:
            echo_json({"ok": not findings, "findings": [vars(f) for f in findings],
                       "examples": [{"rule": r.rule, "example": r.example.label(), "must_cache": r.example.cached,
                                     "holds": r.holds, **r.decision.to_json()} for r in results]})
            return 1 if findings else 0
        for r in results:
            mark = "ok  " if r.holds else "FAIL"
            want = "cache   " if r.example.cached else "no cache"
            click.echo(f"{mark} {r.rule:<12} {want}  {comment(r.example.label())}")
            click.echo(f"     {'':<12} → {comment(r.decision.reason)}")
        for f in findings:
            click.echo(f"finding: rule {f.rule} {comment(f.problem)}" + (f" [{comment(f.example)}]" if f.example else ""))
        held = sum(r.holds for r in results)
        click.echo(f"check: {held}/{len(results)} examples hold, {len(findings)} finding(s) in {len(rules.rules)} rules")
        return 1 if findings else 0

    @cache.command("explain")
    @FILE
    @click.argument("url")
    @click.option("--cookie", "cookies", multiple=True, metavar="NAME=VALUE", help="A cookie the request sends (repeatable).")
    @click.option("--header", "headers", multiple=True, metavar="NAME:VALUE", help="A header the request sends (repeatable).")
    @click.option("--method", default="GET", show_default=True)
    @json_option
    def explain(file: Path, url: str, cookies: tuple, headers: tuple, method: str, as_json: bool) -> None:
        """Say, step by step, what the rules decide for one request."""
        rules = rules_mod.load(file)
        method = method.upper()
        if method not in rules_mod.METHODS:
            raise ConfigError(f"--method {method!r} is not one of {', '.join(rules_mod.METHODS)}")
        req = requests.build(url, method=method, headers=_pairs(headers, ":", "header"),
                             cookies=_pairs(cookies, "=", "cookie"))
        d = evaluate.decide(rules, req)
        if as_json:
            echo_json({"request": {"method": req.method, "path": req.path, "query": req.query}, **d.to_json()})
            return
        _print_explain(rules, req, d)

    @cache.command("compile")
    @FILE
    @click.option("--target", type=click.Choice(sorted(targets.targets())), required=True)
    @click.option("--listen", help="Address:port or port the proxy listens on (default: [site] listen).")
    @click.option("--origin", help="http://host:port of the origin (default: [site] origin).")
    @click.option("--cache-dir", default=targets.Options.cache_dir, show_default=True)
    @click.option("--purge-from", multiple=True, metavar="IP", help="An address allowed to purge (repeatable; default 127.0.0.1, ::1).")
    @click.option("--no-purge-module", is_flag=True, help="nginx: leave out proxy_cache_purge (module not installed).")
    @click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write here instead of stdout.")
    def compile_(file: Path, target: str, listen, origin, cache_dir, purge_from, no_purge_module, output) -> None:
        """Generate the proxy configuration, every block commented with its rule and owner."""
        rules = rules_mod.load(file)
        opts = targets.Options(listen=listen, origin=origin, cache_dir=cache_dir,
                               purge_from=tuple(purge_from) or targets.Options.purge_from,
                               purge_module=not no_purge_module)
        text = targets.compile(rules, target, opts)
        if output:
            output.write_text(text)
            click.echo(f"wrote {output} ({target}, {len(rules.rules)} rules)")
        else:
            click.echo(text, nl=False)

    @cache.command("test")
    @FILE
    @click.option("--proxy", type=click.Choice(["nginx", "varnish"]), default="nginx", show_default=True,
                  help="The real proxy to prove the examples on.")
    @json_option
    def test(file: Path, proxy: str, as_json: bool) -> int:
        """Prove every example on a real proxy in front of an origin that counts hits."""
        from ..cache import proxytest

        rules = rules_mod.load(file)
        runs = proxytest.run(rules, proxy)
        bad = [r for r in runs if not r.as_intended]
        if as_json:
            echo_json({"ok": not bad, "examples": [r.to_json() for r in runs]})
            return 1 if bad else 0
        for r in runs:
            verdict = ("cached as intended" if r.example.cached else "not cached as intended") if r.as_intended else \
                ("NOT CACHED, but must be" if r.example.cached else "CACHED, but must not be")
            click.echo(f"{'ok  ' if r.as_intended else 'FAIL'} {r.rule:<12} {comment(r.example.label())}: {verdict} "
                       f"(origin hit {r.origin_hits} of 2)")
            shown = "; ".join(f"{k}: {comment(v)}" for k, v in r.headers.items()) or "(no cache headers)"
            click.echo(f"     {'':<12} {r.status} {shown}")
        click.echo(f"test: {len(runs) - len(bad)}/{len(runs)} examples hold on {proxy}")
        return 1 if bad else 0

    @cache.command("probe")
    @click.argument("urls", nargs=-1, required=True)
    @click.option("--rules", "rules_file", type=click.Path(dir_okay=False, path_type=Path), help="Compare with these rules.")
    @json_option
    def probe(urls: tuple[str, ...], rules_file: Path | None, as_json: bool) -> int:
        """Fetch live pages and report what the CDN did (and what the rules say)."""
        rules = rules_mod.load(rules_file) if rules_file else None
        found = probes.probe(list(urls), rules)
        failed = [p for p in found if p.verdict in ("error", "disagrees")]
        if as_json:
            echo_json({"ok": not failed, "probes": [p.to_json() for p in found]})
            return 1 if failed else 0
        for p in found:
            click.echo(f"{comment(p.url)}")
            if p.error:
                click.echo(f"  error: {p.error}")
            else:
                click.echo(f"  {p.status} · CDN says: {p.cdn_says}")
                for k in probes.CDN_HEADERS:
                    if k in p.headers:
                        click.echo(f"  {k}: {p.headers[k]}")
            if p.expected is not None:
                click.echo(f"  rules: {comment(p.expected['reason'])}")
                click.echo(f"  {p.verdict}: {comment(p.why)}" if p.why else f"  {p.verdict}")
        click.echo(f"probe: {len(found) - len(failed)}/{len(found)} ok")
        return 1 if failed else 0


def _print_explain(rules, req, d: evaluate.Decision) -> None:
    extra = [f"cookie {k}={v}" for k, v in req.cookies.items()] + \
        [f"{k}: {v}" for k, v in req.headers.items() if k != "cookie"]
    click.echo(f"{req.method} {comment(req.target)}" + (f"  ({comment(', '.join(extra))})" if extra else ""))
    click.echo("")
    click.echo("Rules, tried in order (the first that matches decides):")
    for n, s in enumerate(d.steps, 1):
        click.echo(f"  {n}. {s.rule:<12} {'MATCHES ' if s.matched else 'no      '} {comment(s.why)}")
    skipped = len(rules.rules) - len(d.steps)
    if skipped:
        click.echo(f"     ({skipped} later rule(s) not tried)")
    if d.rule is not None:
        r = d.rule
        click.echo("")
        click.echo(f"Rule {r.name} (owner {comment(r.owner)})")
        click.echo(f"  reason:   {comment(r.reason)}")
        click.echo(f"  expect:   {comment(r.expect)}")
        click.echo(f"  rollback: {comment(r.rollback)}")
        if d.bypasses_tried:
            click.echo("")
            click.echo(f"Bypasses of rule {r.name}, in order (the first that fires stops caching):")
            for s in d.bypasses_tried:
                click.echo(f"  {s.rule:<12} {'FIRES   ' if s.matched else 'no      '} {comment(s.why)}")
                if s.matched:
                    click.echo(f"  {'':<12} why it exists: {comment(rules.bypasses[s.rule].why)}")
        elif r.bypass and not r.action.never:
            click.echo(f"  bypasses: {', '.join(r.bypass)}")
    click.echo("")
    click.echo(f"Decision: {'CACHED' if d.cached else 'NOT CACHED'}: {comment(d.reason)}")
    if d.headers:
        click.echo("Headers the proxy sends:")
        for k, v in d.headers.items():
            click.echo(f"  {k}: {v}")
    else:
        click.echo("Headers: the origin's own (the proxy changes nothing)")
