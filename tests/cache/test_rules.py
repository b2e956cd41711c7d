"""The rules file as a user meets it: the template, `cache check`, `cache explain`, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgsteady.cache import evaluate, requests, rules as rules_mod
from pgsteady.cache.template import template

from .conftest import one_line_error, pgsteady


def _edit(path: Path, old: str, new: str) -> Path:
    text = path.read_text()
    assert old in text, old
    out = path.with_name("edited.toml")
    out.write_text(text.replace(old, new, 1))
    return out


def test_cache_new_writes_a_template_whose_examples_all_hold(tmp_path):
    path = tmp_path / "cache-rules.toml"
    r = pgsteady("cache", "new", str(path))
    assert r.returncode == 0, r.stderr
    for section in ("posts", "tags", "home", "feeds", "sitemaps", "assets", "admin", "previews", "search"):
        assert f'name = "{section}"' in path.read_text()
    r = pgsteady("cache", "check", str(path), "--json")
    assert r.returncode == 0, r.stdout
    report = json.loads(r.stdout)
    assert report["ok"] and report["findings"] == []
    assert len(report["examples"]) >= 20 and all(e["holds"] for e in report["examples"])
    session = next(e for e in report["examples"] if e["rule"] == "posts" and "sessionid" in e["example"])
    assert session["bypass"] == "session" and session["headers"] == {"Cache-Control": "private, no-store"}


def test_cache_new_refuses_to_overwrite_a_file(rules_file):
    before = rules_file.read_text()
    one_line_error(pgsteady("cache", "new", str(rules_file)), "exists", "--force")
    assert rules_file.read_text() == before


def test_explain_of_a_bypassed_request_reads_without_the_code(rules_file):
    r = pgsteady("cache", "explain", str(rules_file), "/posts/hello-world?utm_source=x", "--cookie", "sessionid=abc")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "1. admin" in out and "does not match /admin" in out          # rules tried in order, with why not
    assert "MATCHES  path /posts/hello-world matches /posts/*" in out
    assert "owner editorial@example.com" in out and "rollback:" in out
    assert "session      FIRES    cookie sessionid is sent" in out
    assert "why it exists: A signed-in reader" in out
    assert "Decision: NOT CACHED: bypass 'session' fired" in out
    assert "Cache-Control: private, no-store" in out
    assert "later rule(s) not tried" in out


def test_explain_json_of_a_cached_request_gives_the_headers(rules_file):
    r = pgsteady("cache", "explain", str(rules_file), "/tags/postgresql", "--header", "Accept: text/html", "--json")
    d = json.loads(r.stdout)
    assert d["cached"] and d["rule"] == "tags"
    assert d["headers"]["Cache-Control"] == "public, max-age=60, s-maxage=600, stale-while-revalidate=600"
    assert [b["matched"] for b in d["bypasses_tried"]] == [False, False, False]


@pytest.mark.parametrize("old,new,needles", [
    ('[bypass.session]', '[bypass.session', ("not valid TOML",)),
    ('match = { path = "/posts/*" }', 'match = { path = "posts/*;" }', ("rule 'posts'", "match.path 'posts/*;'", "start with /")),
    ('cdn = "10m", browser = "1m", stale_while_revalidate = "1h"', 'cdn = "10 parsecs", browser = "1m", stale_while_revalidate = "1h"',
     ("rule 'posts'", "cache.cdn = '10 parsecs' is not a duration", "10m")),
    ('reason = "Posts are most', 'raeson = "Posts are most', ("rule 'posts'", "unknown field 'raeson'", "did you mean 'reason'?")),
    ('cookie = "sessionid"', 'cookie = "session id"', ("bypass.session", "not a cookie name")),
    ('must_cache = ["/", "/?utm_campaign=spring"]', 'must_cache = ["/", "http//not a url"]', ("rule 'home'", "is not a URL")),
    ('name = "tags"', 'name = "tags; }"', ("rule name 'tags; }'",)),
])
def test_bad_input_is_one_line_and_exit_2(rules_file, old, new, needles):
    one_line_error(pgsteady("cache", "check", str(_edit(rules_file, old, new))), *needles)


def test_bad_urls_are_one_line_and_exit_2(rules_file):
    one_line_error(pgsteady("cache", "explain", str(rules_file), "not a url"), "is not a URL")
    one_line_error(pgsteady("cache", "explain", str(rules_file), "ftp://example.com/x"), "is not a URL")
    one_line_error(pgsteady("cache", "probe", "/posts/x"), "give the full address")
    one_line_error(pgsteady("cache", "check", str(rules_file.with_name("missing.toml"))), "cannot read rules file")


def _findings(text: str) -> list[str]:
    findings, _ = evaluate.check(rules_mod.parse(text))
    return [f"{f.rule}: {f.problem}" for f in findings]


def test_check_refuses_a_bypass_named_but_not_defined():
    text = template("r.toml").replace('bypass = ["session", "auth", "writes"]', 'bypass = ["session", "auth", "wrties"]')
    assert _findings(text) == ["tags: names bypass 'wrties', which no [bypass.wrties] defines"]


def test_check_refuses_a_rule_without_an_example_each_way():
    text = template("r.toml").replace('must_not_cache = [{ url = "/tags/postgresql", cookies = { sessionid = "abc" } }]\n', "")
    assert _findings(text) == ["tags: has no must_not_cache example; add one URL that must not be cached"]


def test_check_refuses_a_rule_an_earlier_rule_makes_unreachable():
    text = template("r.toml").replace('match = { path = "/preview/**" }', 'match = { path = "/**" }')
    found = _findings(text)
    assert any(f.startswith("search: is unreachable: the earlier rule 'previews'") for f in found), found
    assert any(f.startswith("posts: is unreachable") for f in found)


def test_check_refuses_an_example_that_contradicts_its_rule(rules_file):
    edited = _edit(rules_file, 'bypass = ["session", "auth", "preview", "writes"]\nmust_cache = ["/posts/hello-world"',
                   'bypass = ["auth", "preview", "writes"]\nmust_cache = ["/posts/hello-world"')
    r = pgsteady("cache", "check", str(edited))
    assert r.returncode == 1, r.stdout
    assert "finding: rule posts example contradicts the rules: it must not be cached, but rule 'posts' caches it" in r.stdout
    assert "[/posts/hello-world (cookie sessionid=abc)]" in r.stdout


def test_evaluator_reads_paths_the_way_nginx_does():
    rules = rules_mod.parse(template("r.toml"))
    # nginx decodes and normalises $uri before matching: so must we, or /%61dmin would be a post
    assert evaluate.decide(rules, requests.build("/%61dmin/posts")).rule.name == "admin"
    assert evaluate.decide(rules, requests.build("/posts/../admin/x")).rule.name == "admin"
    assert evaluate.decide(rules, requests.build("/./admin//posts")).rule.name == "admin"


def test_a_percent_encoded_parameter_name_is_never_cached():
    rules = rules_mod.parse(template("r.toml"))
    d = evaluate.decide(rules, requests.build("/posts/hello-world?%70review=1"))
    assert not d.cached and "percent-encoded" in d.reason


def test_methods_other_than_get_and_head_are_never_cached_even_without_a_bypass():
    rules = rules_mod.parse(template("r.toml").replace('bypass = ["writes"]\nmust_cache = ["/sitemap.xml"', 'must_cache = ["/sitemap.xml"'))
    d = evaluate.decide(rules, requests.build("/sitemap.xml", method="DELETE"))
    assert d.rule.name == "sitemaps" and not d.cached and "never stored" in d.reason


def test_durations():
    assert [rules_mod.ttl(v, "x") for v in ("30s", "10m", "1h", "7d", "2w", 90, "45")] == [30, 600, 3600, 604800, 1209600, 90, 45]
    for bad in ("10 parsecs", "-1s", "1.5h", "400d", True, ""):
        with pytest.raises(rules_mod.RulesError):
            rules_mod.ttl(bad, "cdn")


def test_a_query_bypass_fires_for_a_parameter_without_a_value():
    rules = rules_mod.parse(template("r.toml"))
    for url in ("/posts/hello-world?preview", "/posts/hello-world?utm=1&PREVIEW=", "/?preview=1"):
        d = evaluate.decide(rules, requests.build(url))
        assert not d.cached and d.bypass.name == "preview", url
    assert evaluate.decide(rules, requests.build("/posts/hello-world?previewed=1")).cached
