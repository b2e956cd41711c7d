"""`pgsteady.cdn_purge` as jobs: real PostgreSQL, a real worker, providers played by a local HTTP server."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg
import pytest

from pgsteady import Retry, run_worker
from pgsteady.cache import proxytest, purge, rules as rules_mod
from pgsteady.errors import ConfigError, InvalidPayload
from pgsteady.jobs import get_job

from ..helpers import scalar
from .conftest import needs_purge_module

TOKEN = "cf-secret-token-7f3a9"
FAST = Retry(base=0, cap=0, jitter=0)


class Recorder:
    """A provider API that records every call and answers from a script (then 200 {"success": true})."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.script: list[tuple[int, dict, str]] = []
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                rec.calls.append({"method": self.command, "path": self.path, "headers": dict(self.headers),
                                  "body": json.loads(body) if body.startswith(b"{") else body.decode()})
                status, headers, text = rec.script.pop(0) if rec.script else (200, {}, '{"success": true}')
                data = text.encode()
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PURGE = do_BAN = do_GET = _any

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def api():
    rec = Recorder()
    yield rec
    rec.close()


@pytest.fixture
def cloudflare(app, api, monkeypatch):
    monkeypatch.setenv("PGSTEADY_CLOUDFLARE_TOKEN", TOKEN)
    adapter = purge.from_config({"provider": "cloudflare", "zone_id": "zone42", "site": "https://www.example.com",
                                 "base_url": api.url})
    return purge.register(app, adapter, retry=FAST)


def work(app) -> None:
    run_worker(app, until_idle=True, handle_signals=False, poll_interval=0.1)


def history(app, job_id: int) -> dict:
    with psycopg.connect(app.dsn, autocommit=True) as conn:
        return get_job(conn, app.queries, job_id)


def test_purge_job_batches_to_the_provider_limit_and_records_each_answer(app, api, cloudflare):
    urls = [f"/posts/p{i}" for i in range(65)]
    ref = cloudflare.enqueue(urls=urls, keys=["post-1", "post-2"], version="v1")
    work(app)
    job = history(app, ref.id)
    assert job["state"] == "succeeded"
    files = [c["body"]["files"] for c in api.calls if "files" in c["body"]]
    assert [len(f) for f in files] == [30, 30, 5]
    assert files[0][0] == "https://www.example.com/posts/p0"
    assert [c["body"] for c in api.calls if "tags" in c["body"]] == [{"tags": ["post-1", "post-2"]}]
    assert all(c["path"] == "/zones/zone42/purge_cache" and c["headers"]["Authorization"] == f"Bearer {TOKEN}"
               for c in api.calls)
    logged = [e for e in job["events"] if e["message"].startswith("cloudflare purged")]
    assert len(logged) == 4 and logged[0]["data"]["status"] == 200 and '"success": true' in logged[0]["data"]["response"]


def test_the_token_never_reaches_the_job_history_even_when_the_provider_echoes_it(app, api, cloudflare):
    api.script = [(403, {}, json.dumps({"success": False, "errors": [f"bad token Bearer {TOKEN}"]}))]
    ref = cloudflare.enqueue(urls=["/posts/a"], version="v1")
    work(app)
    job = history(app, ref.id)
    assert job["state"] == "succeeded" and job["attempt"] == 2  # the refusal was retried
    stored = json.dumps(job, default=str)
    assert TOKEN not in stored and "bad token" in stored


def test_same_targets_and_version_are_one_job_and_a_new_version_is_another(app, api, cloudflare):
    first = cloudflare.enqueue(urls=["/posts/a", "/"], keys=["post-1"], version=7)
    again = cloudflare.enqueue(urls=["/", "/posts/a"], keys=["post-1"], version=7)
    newer = cloudflare.enqueue(urls=["/posts/a", "/"], keys=["post-1"], version=8)
    assert again.id == first.id and not again.created
    assert newer.id != first.id and newer.created
    work(app)
    assert len(api.calls) == 4  # (urls + keys) for version 7, the same for version 8


def test_a_purge_enqueued_in_a_rolled_back_transaction_is_never_sent(app, api, cloudflare):
    with psycopg.connect(app.dsn) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE posts (id int PRIMARY KEY, body text, version int)")
        with pytest.raises(RuntimeError), conn.transaction():
            conn.execute("INSERT INTO posts VALUES (1, 'draft', 1)")
            cloudflare.enqueue(urls=["/posts/1"], version=1, conn=conn)
            raise RuntimeError("the content write failed")
    work(app)
    assert api.calls == []
    assert scalar(app.dsn, "SELECT count(*) FROM pgsteady.jobs") == 0


def test_a_purge_enqueued_with_the_content_write_is_sent_once_it_commits(app, api, cloudflare):
    with psycopg.connect(app.dsn) as conn:
        with conn.transaction():
            conn.execute("CREATE TABLE posts (id int PRIMARY KEY, body text, version int)")
        with conn.transaction():
            conn.execute("INSERT INTO posts VALUES (1, 'published', 2)")
            ref = cloudflare.enqueue(urls=["/posts/1"], version=2, conn=conn)
    work(app)
    assert history(app, ref.id)["state"] == "succeeded"
    assert [c["body"] for c in api.calls] == [{"files": ["https://www.example.com/posts/1"]}]


def test_a_short_retry_after_is_waited_out_inside_the_attempt(app, api, cloudflare):
    api.script = [(429, {"Retry-After": "0"}, '{"success": false}')]
    ref = cloudflare.enqueue(urls=["/posts/a"], version="v1")
    work(app)
    job = history(app, ref.id)
    assert job["state"] == "succeeded" and job["attempt"] == 1 and len(api.calls) == 2
    assert [e["data"].get("status") for e in job["events"] if e["kind"] == "log"] == [429, 200]


def test_a_long_retry_after_puts_the_job_back_no_sooner_than_asked(app, api, cloudflare):
    api.script = [(429, {"Retry-After": "3600"}, '{"success": false}')]
    ref = cloudflare.enqueue(urls=["/posts/a"], version="v1")
    before = datetime.now(timezone.utc)
    work(app)
    job = history(app, ref.id)
    assert job["state"] == "waiting" and job["attempt"] == 1
    assert job["run_at"] >= before + timedelta(seconds=3590)
    assert "Retry-After 3600s" in json.dumps(job["errors"])


def test_a_retried_attempt_resumes_after_the_last_batch_that_went_through(app, api, cloudflare):
    api.script = [(200, {}, '{"success": true}'), (503, {}, "upstream down")]
    ref = cloudflare.enqueue(urls=[f"/p{i}" for i in range(40)], version="v1")
    work(app)
    job = history(app, ref.id)
    assert job["state"] == "succeeded" and job["attempt"] == 2
    sizes = [len(c["body"]["files"]) for c in api.calls]
    assert sizes == [30, 10, 10]  # batch 1 once; batch 2 failed with 503, then went through


def test_fastly_purges_keys_in_one_request_and_urls_one_by_one(app, api, monkeypatch):
    monkeypatch.setenv("PGSTEADY_FASTLY_TOKEN", "fastly-secret")
    purger = purge.register(app, purge.Fastly(service_id="svc1", site="https://www.example.com", base_url=api.url), retry=FAST)
    purger.enqueue(urls=["/posts/a", "/posts/b"], keys=[f"k{i}" for i in range(300)], version="1")
    work(app)
    paths = [c["path"] for c in api.calls]
    assert paths[:2] == ["/purge/www.example.com/posts/a", "/purge/www.example.com/posts/b"]
    assert paths[2:] == ["/service/svc1/purge"] * 2
    assert [len(c["headers"]["Surrogate-Key"].split()) for c in api.calls[2:]] == [256, 44]
    assert all(c["headers"]["Fastly-Key"] == "fastly-secret" for c in api.calls)


def test_varnish_bans_surrogate_keys_and_purges_urls(app, api):
    purger = purge.register(app, purge.Varnish(base_url=api.url, host="www.example.com"), retry=FAST)
    purger.enqueue(urls=["/posts/a"], keys=["post-1", "tag-pg"], version="1")
    work(app)
    assert [(c["method"], c["path"], c["headers"].get("X-Purge-Keys")) for c in api.calls] == \
        [("PURGE", "/posts/a", None), ("BAN", "/", "post-1 tag-pg")]
    assert api.calls[0]["headers"]["Host"] == "www.example.com"


def test_purge_limits_go_into_the_fleet_wide_queue_limits(app, cloudflare):
    cloudflare.set_limits()
    row = scalar(app.dsn, "SELECT to_jsonb(l) FROM pgsteady.queues l WHERE queue = 'cdn-purge'")
    assert row["max_running"] == 1 and row["max_per_second"] == 2


def test_bad_purges_are_refused_at_enqueue(app, cloudflare):
    with pytest.raises(InvalidPayload, match="at least one URL"):
        cloudflare.enqueue(version="1")
    with pytest.raises(InvalidPayload, match="must be a path"):
        cloudflare.enqueue(urls=["/posts/a\nHost: evil"], version="1")
    with pytest.raises(InvalidPayload, match="surrogate key"):
        cloudflare.enqueue(keys=["a b"], version="1")
    with pytest.raises(ConfigError, match="not in the config"):
        purge.from_config({"provider": "fastly", "service_id": "s", "token": "x"})
    nginx = purge.Purger(app, purge.Nginx(), "q")
    with pytest.raises(ConfigError, match="cannot purge by surrogate key"):
        nginx.enqueue(keys=["k"], version="1")


def test_a_purge_job_removes_a_page_from_a_real_nginx(app, rules_file):
    needs_purge_module()
    rules = rules_mod.load(rules_file)
    with proxytest.Origin() as origin, proxytest.Nginx(rules, origin.port) as proxy:
        purger = purge.register(app, purge.Nginx(f"http://127.0.0.1:{proxy.port}", host="localhost"), retry=FAST)
        proxy.request("GET", "/posts/hello-world")
        assert proxy.request("GET", "/posts/hello-world")[1]["x-cache"] == "HIT" and origin.hits == 1
        ref = purger.enqueue(urls=["/posts/hello-world"], version="rev-2")
        work(app)
        assert history(app, ref.id)["state"] == "succeeded"
        assert proxy.request("GET", "/posts/hello-world")[1]["x-cache"] == "MISS"
        assert origin.hits == 2
