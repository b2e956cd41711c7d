"""The varnish target on a real varnishd: the template's examples, PURGE and surrogate-key BAN."""

from __future__ import annotations

import json

from pgsteady.cache import proxytest, rules as rules_mod
from pgsteady.cache.purge import adapters

from .conftest import needs_varnish, pgsteady


def test_every_template_example_holds_on_a_real_varnish(rules_file):
    needs_varnish()
    r = pgsteady("cache", "test", str(rules_file), "--proxy", "varnish", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    report = json.loads(r.stdout)
    assert report["ok"] and len(report["examples"]) >= 20


def test_cache_test_on_varnish_catches_a_session_cookie_that_is_not_bypassed(rules_file):
    needs_varnish()
    wrong = rules_file.with_name("wrong.toml")
    wrong.write_text(rules_file.read_text().replace('bypass = ["session", "auth", "writes"]\nmust_cache = ["/tags/postgresql"',
                                                    'bypass = ["auth", "writes"]\nmust_cache = ["/tags/postgresql"'))
    r = pgsteady("cache", "test", str(wrong), "--proxy", "varnish")
    assert r.returncode == 1, r.stdout + r.stderr
    assert [ln for ln in r.stdout.splitlines() if ln.startswith("FAIL")] == \
        ["FAIL tags         /tags/postgresql (cookie sessionid=abc): CACHED, but must not be (origin hit 0 of 2)"]


def test_varnish_purge_and_surrogate_key_ban_send_the_next_request_to_the_origin(rules_file):
    needs_varnish()
    rules = rules_mod.load(rules_file)
    with proxytest.Origin() as origin, proxytest.Varnish(rules, origin.port) as proxy:
        for path in ("/posts/hello-world", "/tags/postgresql", "/posts/hello-world", "/tags/postgresql"):
            proxy.request("GET", path)
        assert origin.hits == 2
        varnish = adapters.Varnish(f"http://127.0.0.1:{proxy.port}", host="localhost")  # the Host pages were cached under
        assert varnish.purge("keys", ["hello-world", "no-such-key"]).status == 200   # the origin tagged it "posts hello-world"
        assert proxy.request("GET", "/posts/hello-world")[1]["x-cache"] == "MISS"
        assert proxy.request("GET", "/tags/postgresql")[1]["x-cache"] == "HIT"
        assert varnish.purge("urls", ["/tags/postgresql"]).status == 200
        assert proxy.request("GET", "/tags/postgresql")[1]["x-cache"] == "MISS"
        assert origin.hits == 4
        assert "surrogate-key" not in proxy.request("GET", "/tags/postgresql")[1]   # kept inside the proxy
