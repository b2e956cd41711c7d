"""The dashboard over HTTP: pages, actions, and the abuse each surface must refuse."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from pgsteady.dashboard import Auth, hash_password
from pgsteady.dashboard.security import CSP

from ..helpers import ROOT, scalar

PAGES = ["/", "/queues", "/jobs", "/workers", "/schedules", "/indexes", "/changes", "/changes/2026-12-01-posts-slug",
         "/deploys"]


def csrf(client, path: str = "/queues") -> str:
    return re.search(r'name="csrf" value="([^"]+)"', client.get(path).text).group(1)


def test_every_page_answers_with_the_security_headers(seeded, client_for):
    c = client_for(seeded.dsn)
    for path in [*PAGES, f"/jobs/{seeded.failed_id}", "/jobs/999999999", "/nope"]:
        r = c.get(path)
        assert r.status_code == (404 if path in ("/jobs/999999999", "/nope") else 200), (path, r.text[:500])
        assert r.headers["content-security-policy"] == CSP and "frame-ancestors 'none'" in CSP
        assert "'unsafe-inline'" not in CSP and "script-src 'self'" in CSP
        assert r.headers["x-content-type-options"] == "nosniff"
        assert r.headers["referrer-policy"] == "same-origin"
        assert r.headers["cache-control"] == "no-store"
        assert "<script>" not in r.text.split("</head>")[1]  # no inline script anywhere in a body
        assert "Traceback" not in r.text or path.startswith("/jobs/")  # only a job's own tracebacks


def test_the_overview_answers_the_status_questions_with_the_status_code(seeded, client_for):
    from pgsteady.monitoring.status import check

    s = check(seeded.dsn)
    page = client_for(seeded.dsn).get("/").text
    assert {"healthy": "Healthy", "degraded": "Degraded", "down": "Down"}[s.health] in page
    for reason in s.reasons:
        assert reason.replace("'", "&#39;") in page
    assert page.count("<svg") == 8 and "deploy v42" in page  # 4 charts x (hour, day), the mark on the axis
    assert "SMTPError: 550 mailbox unavailable" in page


def test_stored_html_is_shown_as_text(seeded, client_for):
    page = client_for(seeded.dsn).get("/").text
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_secret_looking_arguments_are_masked_and_the_mask_is_configurable(seeded, client_for):
    page = client_for(seeded.dsn).get(f"/jobs/{seeded.secret_id}").text
    assert "hunter2" not in page and "sk-live-123" not in page and "ann@example.com" in page
    page = client_for(seeded.dsn, mask_keys=r"^to$").get(f"/jobs/{seeded.secret_id}").text
    assert "ann@example.com" not in page and "hunter2" in page


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(seeded, client_for):
    c = client_for(seeded.dsn)
    c.get("/queues")
    for data in ({}, {"csrf": "forged"}):
        r = c.post("/queues/mail/pause", data=data)
        assert r.status_code == 403 and "CSRF" in r.text
    assert scalar(seeded.dsn, "SELECT count(*) FROM pgsteady.queues WHERE queue = 'mail'") == 0
    # A token from another session does not work either.
    other = client_for(seeded.dsn)
    r = other.post("/queues/mail/pause", data={"csrf": csrf(c)})
    assert r.status_code == 403
    r = c.post("/queues/mail/pause", data={"csrf": csrf(c), "back": "/queues"}, follow_redirects=False)
    assert r.status_code == 303 and scalar(seeded.dsn, "SELECT paused FROM pgsteady.queues WHERE queue = 'mail'")


def test_state_changes_only_by_post(seeded, client_for):
    c = client_for(seeded.dsn)
    assert c.get("/queues/mail/pause").status_code in (404, 405)
    assert c.get(f"/jobs/{seeded.failed_id}/retry").status_code in (404, 405)


def test_actions_are_recorded_with_who_and_from_where(seeded, client_for):
    c = client_for(seeded.dsn)
    token = csrf(c)
    c.post("/queues/mail/limits", data={"csrf": token, "max_running": "4", "max_per_second": ""})
    assert scalar(seeded.dsn, "SELECT max_running FROM pgsteady.queues WHERE queue = 'mail'") == 4
    actor = scalar(seeded.dsn, "SELECT worker_id FROM pgsteady.events WHERE kind = 'queue_limits'")
    assert actor == "dashboard:local from testclient" or actor.startswith("dashboard:local from ")
    c.post(f"/jobs/{seeded.failed_id}/retry", data={"csrf": token})
    assert scalar(seeded.dsn, "SELECT state::text FROM pgsteady.jobs WHERE id = %s", [seeded.failed_id]) == "waiting"
    who = scalar(seeded.dsn, "SELECT worker_id FROM pgsteady.events WHERE job_id = %s AND kind = 'manual_retry'",
                 [seeded.failed_id])
    assert who is not None


def test_bad_limits_get_a_clear_400_and_store_nothing(seeded, client_for):
    c = client_for(seeded.dsn)
    r = c.post("/queues/mail/limits", data={"csrf": csrf(c), "max_running": "-3"})
    assert r.status_code == 400 and "max_running must be a positive whole number" in r.text, r.text
    assert scalar(seeded.dsn, "SELECT count(*) FROM pgsteady.queues WHERE queue = 'mail'") == 0


def test_read_only_hides_and_refuses_every_action(seeded, client_for):
    c = client_for(seeded.dsn, read_only=True)
    for path in ["/queues", f"/jobs/{seeded.failed_id}", "/schedules", "/jobs"]:
        page = c.get(path).text
        assert 'method="post"' not in page and "read-only" in page
    token = re.search(r'name="csrf" value="([^"]+)"', c.get("/").text)
    assert token is None  # no form at all, not even logout (there is no login)
    c.cookies.clear()
    r = c.post(f"/jobs/{seeded.failed_id}/retry", data={"csrf": "x"})
    assert r.status_code == 403


def test_bad_input_gets_a_clear_4xx_page_not_a_traceback(seeded, client_for):
    c = client_for(seeded.dsn)
    cases = {
        "/jobs/abc": (404, "a job id is a positive whole number"),
        "/jobs/99999999999999999999": (404, "a job id is a positive whole number"),
        "/jobs/424242": (404, "no job with id 424242"),
        "/jobs?state=exploded": (400, "state must be one of"),
        "/jobs?window=1y": (400, "window must be one of"),
        "/jobs?before=-1": (400, "before must be a job id"),
        "/jobs?q=" + "x" * 300: (400, "longer than 200"),
        "/changes/nope": (404, "no change 'nope'"),
    }
    for path, (status, text) in cases.items():
        r = c.get(path)
        assert r.status_code == status and text.replace("'", "&#39;") in r.text, (path, r.status_code, r.text[-600:])
        assert "Traceback" not in r.text
    token = csrf(c)
    r = c.post("/queues/mail/pause", content=b"csrf=" + token.encode() + b"&\xff\xfe",
               headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400 and "could not be read" in r.text
    r = c.post("/queues/mail/pause", content=b'{"csrf": "x"}', headers={"content-type": "application/json"})
    assert r.status_code == 415


def test_request_bodies_are_size_limited(seeded, client_for):
    c = client_for(seeded.dsn, max_body_bytes=1024)
    r = c.post("/queues/mail/pause", data={"csrf": csrf(c), "pad": "x" * 5000})
    assert r.status_code == 413 and r.headers["x-content-type-options"] == "nosniff"

    def chunks():
        for _ in range(10):
            yield b"x" * 500

    r = c.post("/queues/mail/pause", content=chunks(), headers={"content-type": "application/x-www-form-urlencoded"})
    assert r.status_code == 413
    assert scalar(seeded.dsn, "SELECT count(*) FROM pgsteady.queues WHERE queue = 'mail'") == 0


def test_job_filters_and_keyset_pages(seeded, client_for):
    c = client_for(seeded.dsn)
    page = c.get("/jobs?state=failed").text
    ids = [int(i) for i in re.findall(r'<th scope="row"><a href="/jobs/(\d+)"', page)]
    assert ids and ids == sorted(ids, reverse=True)
    assert scalar(seeded.dsn, "SELECT count(*) FROM pgsteady.jobs WHERE state = 'failed'") == len(ids)
    # 300+ succeeded jobs: 50 per page, the next page starts below the last id shown.
    first = c.get("/jobs?state=succeeded").text
    shown = [int(i) for i in re.findall(r'<th scope="row"><a href="/jobs/(\d+)"', first)]
    assert len(shown) == 50
    nxt = re.search(r'href="/jobs\?([^"]+)" rel="next"', first).group(1).replace("&amp;", "&")
    assert f"before={shown[-1]}" in nxt and "offset" not in nxt
    second = [int(i) for i in re.findall(r'<th scope="row"><a href="/jobs/(\d+)"', c.get("/jobs?" + nxt).text)]
    assert second and max(second) < shown[-1]
    assert [f"{seeded.secret_id}"] == re.findall(r'<th scope="row"><a href="/jobs/(\d+)"',
                                                 c.get("/jobs?key=user:7").text)
    assert re.findall(r'<th scope="row"><a href="/jobs/(\d+)"', c.get("/jobs?q=ANN@EXAMPLE").text) == \
        [f"{seeded.secret_id}"]
    assert "No job matches" in c.get("/jobs?queue=nothing-here").text


def test_the_job_list_never_counts_or_offsets_the_jobs():
    from pgsteady.queries import _raw

    # The dashboard's reads live with their tables (sql/jobs.sql, workers.sql, …), found by name.
    bodies = [body + ";" for name, body in _raw().items() if name.startswith("dashboard_")]
    assert len(bodies) >= 4
    for body in bodies:
        assert "OFFSET" not in body.upper()
        assert not re.search(r"count\(\*\)\s+FROM\s+\{schema\}\.jobs\s*(WHERE\s+[^;]*)?;", body)


def test_retry_all_failed_matching_a_filter_asks_first(seeded, client_for):
    c = client_for(seeded.dsn)
    failed = scalar(seeded.dsn, "SELECT count(*) FROM pgsteady.jobs WHERE state = 'failed' AND queue = 'mail'")
    token = csrf(c)
    r = c.post("/jobs/retry-failed", data={"csrf": token, "queue": "mail"})
    assert r.status_code == 200 and f"{failed} failed job(s) match" in r.text
    assert scalar(seeded.dsn, "SELECT count(*) FROM pgsteady.jobs WHERE state = 'failed'") == failed  # nothing yet
    r = c.post("/jobs/retry-failed", data={"csrf": token, "queue": "mail", "confirm": "yes"})
    assert r.status_code == 200 and f"{failed} failed job(s) will run again" in r.text
    assert scalar(seeded.dsn, "SELECT count(*) FROM pgsteady.jobs WHERE state = 'failed'") == 0


def test_login_sessions_are_signed_httponly_samesite_strict_cookies(seeded, client_for):
    c = client_for(seeded.dsn, auth=Auth(password_hash=hash_password("correct horse")))
    r = c.get("/", follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].endswith("/login")
    assert c.post("/queues/mail/pause", data={}).status_code == 401
    token = csrf(c, "/login")
    r = c.post("/login", data={"csrf": token, "password": "wrong"})
    assert r.status_code == 401 and "not right" in r.text
    r = c.post("/login", data={"csrf": csrf(c, "/login"), "password": "correct horse"}, follow_redirects=False)
    assert r.status_code == 303
    cookie = r.headers["set-cookie"]
    assert "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    assert c.get("/").status_code == 200
    # A tampered cookie is no session at all.
    value = c.cookies.get("pgsteady_session")
    c.cookies.set("pgsteady_session", value[:-3] + ("AAA" if not value.endswith("AAA") else "BBB"))
    assert c.get("/", follow_redirects=False).status_code == 303


def test_a_token_logs_in_too(seeded, client_for):
    c = client_for(seeded.dsn, auth=Auth(token="t" * 32))
    r = c.post("/login", data={"csrf": csrf(c, "/login"), "password": "t" * 32}, follow_redirects=False)
    assert r.status_code == 303 and c.get("/").status_code == 200


def test_the_dashboard_mounts_inside_another_starlette_app(seeded):
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.testclient import TestClient

    from pgsteady.dashboard import create_app

    inner = create_app(seeded.dsn)
    outer = Starlette(routes=[Mount("/ops/jobs", app=inner)])
    with TestClient(outer, base_url="http://127.0.0.1") as c:
        page = c.get("/ops/jobs/queues").text
        assert 'href="/ops/jobs/static/style.css"' in page and 'action="/ops/jobs/queues/mail/pause"' in page
        token = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
        r = c.post("/ops/jobs/queues/mail/pause", data={"csrf": token, "back": "/queues"}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/ops/jobs/queues"
        assert c.get("/ops/jobs/static/live.js").status_code == 200
    inner.dashboard.close()


def _cli(*args: str, dsn: str) -> subprocess.CompletedProcess:
    import os
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PGSTEADY_DSN": dsn}
    for name in ("PGSTEADY_DASHBOARD_TOKEN", "PGSTEADY_DASHBOARD_PASSWORD_HASH", "PGSTEADY_APP"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "pgsteady", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::"])
def test_the_dashboard_refuses_a_public_address_without_authentication(dsn, host):
    r = _cli("dashboard", "--host", host, "--port", "0", dsn=dsn)
    assert r.returncode == 2 and "refusing to serve the dashboard" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_a_malformed_password_hash_or_short_token_is_one_clear_line(dsn):
    r = _cli("dashboard", "--password-hash", "plaintext", dsn=dsn)
    assert r.returncode == 2 and "--hash-password" in r.stderr
    r = _cli("dashboard", "--token", "short", dsn=dsn)
    assert r.returncode == 2 and "at least 16 characters" in r.stderr


def test_password_hashes_verify_and_differ_per_salt():
    from pgsteady.dashboard.security import verify_password

    a, b = hash_password("s3cret"), hash_password("s3cret")
    assert a != b and a.startswith("scrypt$") and "s3cret" not in a
    assert verify_password("s3cret", a) and not verify_password("s3cret!", a)
    assert not verify_password("x", "scrypt$1$1$1$!!$!!")


def test_a_rare_filter_looks_at_a_bounded_number_of_jobs_per_page(seeded):
    import psycopg

    from pgsteady.dashboard import reads
    from pgsteady.queries import for_schema

    q = for_schema("pgsteady")
    total = scalar(seeded.dsn, "SELECT count(*) FROM pgsteady.jobs")
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        f = reads.JobFilter(task="render.page", state="succeeded")
        seen, pages, before = [], 0, None
        while True:
            page = reads.jobs(conn, q, reads.JobFilter(**{**f.__dict__, "before": before}), limit=50, scan=100)
            seen += [r.id for r in page.rows]
            pages += 1
            before = page.next_before or page.scanned_to
            if before is None:
                break
            assert page.scanned <= 100
        want = [r[0] for r in conn.execute(
            "SELECT id FROM pgsteady.jobs WHERE task = 'render.page' AND state = 'succeeded' ORDER BY id DESC")]
        assert seen == want and pages >= total // 100


def test_without_a_login_only_loopback_host_names_are_answered(seeded, client_for):
    """DNS rebinding: evil.example resolving to 127.0.0.1 must not read the dashboard."""
    c = client_for(seeded.dsn)
    for host in ("evil.example", "evil.example:8188", "10.0.0.5"):
        r = c.get("/", headers={"host": host})
        assert r.status_code == 403 and "loopback" in r.text and r.headers["x-content-type-options"] == "nosniff"
    for host in ("127.0.0.1:8188", "localhost", "[::1]:8188"):
        assert c.get("/queues", headers={"host": host}).status_code == 200, host
    assert client_for(seeded.dsn, allowed_hosts=("ops.example",)).get(
        "/queues", headers={"host": "ops.example"}).status_code == 200
    authed = client_for(seeded.dsn, auth=Auth(token="t" * 32))
    assert authed.get("/login", headers={"host": "ops.example"}).status_code == 200


def test_an_action_never_redirects_off_the_dashboard(seeded, client_for):
    c = client_for(seeded.dsn)
    for back in ("//evil.example/", "/\\evil.example", "https://evil.example/", "javascript:alert(1)"):
        r = c.post("/queues/mail/resume", data={"csrf": csrf(c), "back": back}, follow_redirects=False)
        assert r.status_code == 303 and r.headers["location"] == "/", back


def test_the_dashboard_command_serves_and_stops_on_sigterm(dsn):
    import os
    import signal
    import socket
    import urllib.request

    from ..helpers import wait_until

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PGSTEADY_DSN": dsn}
    env.pop("PGSTEADY_APP", None)
    proc = subprocess.Popen([sys.executable, "-m", "pgsteady", "dashboard", "--port", str(port), "--read-only"],
                            cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = wait_until(proc.stderr.readline, timeout=30, what="the serving line")
        assert f"http://127.0.0.1:{port}/" in line and "read-only" in line

        def get():
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/queues", timeout=5) as r:
                    return r.status, r.headers
            except OSError:
                return None
        status, headers = wait_until(get, timeout=30, what="the dashboard to answer")
        assert status == 200 and headers["x-content-type-options"] == "nosniff" and "server" not in headers
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
