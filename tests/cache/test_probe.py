"""`cache probe` against a local server playing a CDN edge."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from .conftest import pgsteady

PAGES = {
    "/posts/hello-world": {"Cache-Control": "public, max-age=60, s-maxage=600, stale-while-revalidate=3600, stale-if-error=86400",
                           "Age": "42", "X-Cache": "HIT", "X-Served-By": "cache-fra-1"},
    "/admin": {"Cache-Control": "public, max-age=300", "CF-Cache-Status": "HIT", "Age": "12"},
    "/escape": {"X-Cache": "HIT\x1b[2J"},
}


@pytest.fixture
def edge():
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            headers = PAGES.get(self.path.split("?")[0])
            self.send_response(200 if headers is not None else 404)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_probe_reports_what_the_cdn_did_and_whether_the_rules_agree(edge, rules_file):
    r = pgsteady("cache", "probe", f"{edge}/posts/hello-world", f"{edge}/admin", "--rules", str(rules_file), "--json")
    assert r.returncode == 1, r.stdout + r.stderr  # the admin page is cached by the edge: that is a finding
    post, admin = json.loads(r.stdout)["probes"]
    assert post["verdict"] == "agrees" and post["cdn_says"] == "HIT" and post["headers"]["x-served-by"] == "cache-fra-1"
    assert admin["verdict"] == "disagrees" and admin["cdn_says"] == "HIT"
    assert "rules say: rule 'admin' never caches" in admin["why"]


def test_probe_without_rules_only_reports_and_strips_terminal_escapes(edge):
    r = pgsteady("cache", "probe", f"{edge}/escape")
    assert r.returncode == 0, r.stderr
    assert "\x1b" not in r.stdout and "CDN says: HIT" in r.stdout


def test_probe_of_an_unreachable_page_is_an_error_finding_not_a_crash(edge):
    port = edge.rsplit(":", 1)[1]
    r = pgsteady("cache", "probe", "http://127.0.0.1:1/posts/x", f"{edge}/posts/hello-world")
    assert r.returncode == 1 and "error:" in r.stdout and port in r.stdout
