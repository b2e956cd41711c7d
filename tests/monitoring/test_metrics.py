"""The metrics endpoint parses as Prometheus text and agrees with the database; the probes."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from datetime import timedelta

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pgsteady.database import with_dbname
from pgsteady.monitoring import server
from pgsteady.monitoring.counts import SECONDS


@pytest.fixture
def serve():
    """Start a MetricsApp on 127.0.0.1 and a free port; yields a GET function."""
    servers = []

    def start(app: server.MetricsApp):
        httpd = server.make(app, "127.0.0.1", 0)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        base = f"http://127.0.0.1:{httpd.server_address[1]}"

        def get(path: str) -> tuple[int, str, str]:
            try:
                with urllib.request.urlopen(base + path, timeout=10) as r:
                    return r.status, r.headers["Content-Type"], r.read().decode()
            except urllib.error.HTTPError as e:
                return e.code, e.headers["Content-Type"], e.read().decode()
        return get

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def samples(text: str) -> dict[str, dict[tuple, float]]:
    """{sample name: {sorted label items: value}} from the Prometheus text parser."""
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


def test_metrics_parse_and_their_counters_match_the_database(history, dsn, serve):
    history.healthy_fleet()
    at, spread = history.ago(hours=2), timedelta(hours=2)
    history.succeeded("send", 120, queue="mail", at=at, spread=spread, run=0.3, wait=2)
    history.succeeded("render", 45, at=at, spread=spread, run=40)
    history.ended("send", 9, "retry_scheduled", queue="mail", at=at, spread=spread)
    history.ended("send", 4, "failed", queue="mail", at=at, spread=spread)
    history.ended("send", 2, "failed", queue="mail", at=at, spread=spread, discard=True)
    history.ended("render", 3, "rescued", at=at, spread=spread)
    history.ended("render", 6, "late_write_rejected", at=at, spread=spread)
    history.ended("render", 1, "cancelled", at=at, spread=spread)
    history.waiting(7, queue="mail", due=history.ago(minutes=3))
    history.waiting(2, queue="mail", due=history.now + timedelta(hours=1))
    history.count()
    status, ctype, body = serve(server.MetricsApp(dsn))("/metrics")
    assert status == 200 and ctype.startswith("text/plain")
    m = samples(body)

    # Every counter equals a count made straight from jobs and events.
    db = history.conn.execute("""
        SELECT j.queue, j.task, o.outcome, count(*)
        FROM (SELECT id, 'succeeded' AS outcome FROM pgsteady.jobs WHERE state = 'succeeded'
              UNION ALL
              SELECT e.job_id, CASE e.kind WHEN 'retry_scheduled' THEN 'retried' WHEN 'rescued' THEN 'rescued'
                                           WHEN 'cancelled' THEN 'cancelled'
                                           ELSE CASE WHEN e.attempt < j.max_attempts THEN 'discarded' ELSE 'failed' END END
              FROM pgsteady.events e JOIN pgsteady.jobs j ON j.id = e.job_id
              WHERE e.kind IN ('retry_scheduled', 'failed', 'rescued', 'cancelled')) AS o
        JOIN pgsteady.jobs j ON j.id = o.id
        GROUP BY 1, 2, 3""").fetchall()
    assert len(db) == 7
    for queue, task, outcome, n in db:
        assert m["pgsteady_jobs_total"][(("outcome", outcome), ("queue", queue), ("task", task))] == n
    assert sum(m["pgsteady_jobs_total"].values()) == sum(n for *_, n in db)
    rejected = history.conn.execute(
        "SELECT count(*) FROM pgsteady.events WHERE kind = 'late_write_rejected'").fetchone()[0]
    assert m["pgsteady_late_writes_rejected_total"][(("queue", "default"), ("task", "render"))] == rejected

    # Histograms: cumulative buckets up to hours, count = succeeded, sum = total run time.
    send = (("queue", "mail"), ("task", "send"))
    assert m["pgsteady_job_duration_seconds_count"][send] == 120
    assert m["pgsteady_job_duration_seconds_sum"][send] == pytest.approx(120 * 0.3)
    buckets = {dict(k)["le"]: v for k, v in m["pgsteady_job_duration_seconds_bucket"].items()
               if dict(k)["task"] == "send"}
    assert len(buckets) == len(SECONDS) + 1 and buckets["+Inf"] == 120 and "14400.0" in buckets
    assert (buckets["0.25"], buckets["0.5"]) == (0, 120)
    assert m["pgsteady_job_wait_seconds_bucket"][(("le", "2.5"), *send)] == 120
    render_buckets = {dict(k)["le"]: v for k, v in m["pgsteady_job_duration_seconds_bucket"].items()
                      if dict(k)["task"] == "render"}
    assert (render_buckets["30.0"], render_buckets["60.0"]) == (0, 45)

    # Gauges: the queues as they are now.
    assert m["pgsteady_queue_depth"][(("queue", "mail"),)] == 7
    assert m["pgsteady_queue_depth"][(("queue", "default"),)] == 0
    assert 150 <= m["pgsteady_queue_oldest_job_age_seconds"][(("queue", "mail"),)] <= 600
    assert m["pgsteady_workers"][()] == 1
    assert m["pgsteady_database_up"][()] == 1
    assert [dict(k)["version"] for k in m["pgsteady_build_info"]] and list(m["pgsteady_build_info"].values()) == [1]
    # No high-cardinality labels anywhere.
    labels = {name for series in m.values() for key in series for name, _ in key}
    assert labels <= {"queue", "task", "outcome", "le", "version", "question"}  # question: a fixed list


def test_metrics_of_an_unreachable_database_say_so(server_dsn, serve):
    get = serve(server.MetricsApp(with_dbname(server_dsn, "no_such_database_here"), connect_timeout=2))
    status, _, body = get("/metrics")
    m = samples(body)
    assert status == 200 and m["pgsteady_database_up"][()] == 0 and "pgsteady_jobs_total" not in m
    status, ctype, body = get("/healthz")
    assert status == 503 and ctype == "application/json"
    assert json.loads(body) == {"ok": False, "reason": server.UNREACHABLE}
    assert get("/readyz")[0] == 503


def test_healthz_and_readyz_follow_the_backlog(history, dsn, serve):
    history.healthy_fleet()
    get = serve(server.MetricsApp(dsn, max_wait=60))
    assert get("/healthz")[:1] == (200,) and json.loads(get("/healthz")[2]) == {"ok": True}
    assert get("/readyz")[0] == 200
    history.waiting(3, queue="mail", due=history.ago(minutes=5))
    status, _, body = get("/readyz")
    assert status == 503
    reason = json.loads(body)
    assert reason["ok"] is False and "queue 'mail' is slow: its oldest due job has waited" in reason["reason"]
    assert get("/healthz")[0] == 200  # slow is not dead
    history.conn.execute("INSERT INTO pgsteady.queues (queue, paused) VALUES ('mail', true)")
    assert get("/readyz")[0] == 200  # a paused queue is meant to wait
    assert get("/nope")[0] == 404


def test_readyz_fails_with_zero_workers(history, dsn, serve):
    get = serve(server.MetricsApp(dsn))
    status, _, body = get("/readyz")
    assert status == 503 and "no live worker" in json.loads(body)["reason"]
    history.healthy_fleet()
    assert get("/readyz")[0] == 200
    m = samples(get("/metrics")[2])
    assert m["pgsteady_ready"][()] == 1 and m["pgsteady_status"][(("question", "workers"),)] == 0


def test_readyz_status_and_metrics_see_jobs_stuck_past_their_lease(history, dsn, serve):
    from pgsteady.monitoring.status import check

    history.healthy_fleet()
    history.conn.execute("""
        INSERT INTO pgsteady.jobs (queue, task, args, state, attempt, max_attempts, lease_token, lease_expires_at,
                                   worker_id, started_at)
        VALUES ('default', 't', '{}', 'running', 1, 3, gen_random_uuid(), now() - interval '4 minutes', 'w-gone',
                now() - interval '5 minutes'),
               ('default', 't', '{}', 'running', 1, 3, gen_random_uuid(), now() + interval '1 minute', 'w-live', now())
    """)
    get = serve(server.MetricsApp(dsn))
    status, _, body = get("/readyz")
    assert status == 503 and "1 running job(s) past their lease, the oldest by 4m" in json.loads(body)["reason"]
    m = samples(get("/metrics")[2])
    assert m["pgsteady_jobs_past_lease"][()] == 1
    assert 200 <= m["pgsteady_oldest_past_lease_seconds"][()] <= 600
    assert m["pgsteady_ready"][()] == 0 and m["pgsteady_status"][(("question", "past_lease"),)] == 1
    s = check(dsn)
    assert s.health == "degraded" and s.sections["slow"]["past_lease"]["jobs"] == 1
    assert any("past their lease" in r for r in s.reasons)


def test_readyz_fails_on_a_schema_that_is_not_current(empty_dsn, serve):
    status, _, body = serve(server.MetricsApp(empty_dsn))("/readyz")
    assert status == 503 and "run `pgsteady migrate`" in json.loads(body)["reason"]


def test_a_missing_schema_is_not_a_database_that_is_down(empty_dsn, serve):
    m = samples(serve(server.MetricsApp(empty_dsn))("/metrics")[2])
    assert m["pgsteady_database_up"][()] == 1
    assert m["pgsteady_schema_current"][()] == 0 and m["pgsteady_ready"][()] == 0
    assert "pgsteady_jobs_total" not in m


def test_healthz_of_an_unreachable_database_names_no_user_host_or_database(server_dsn, serve, caplog):
    from psycopg.conninfo import conninfo_to_dict

    dsn = with_dbname(server_dsn, "secret_db_name_here")
    get = serve(server.MetricsApp(dsn, connect_timeout=2))
    info = conninfo_to_dict(dsn)
    for path in ("/healthz", "/readyz", "/metrics"):
        body = get(path)[2]
        assert "secret_db_name_here" not in body
        for value in (info.get("user"), info.get("host"), info.get("port")):
            if value and len(str(value)) > 2:
                assert str(value) not in body.replace("127.0.0.1:", ""), (path, value, body)


def test_three_hundred_idle_clients_cannot_pile_up_threads(dsn, serve):
    import socket

    httpd = server.make(server.MetricsApp(dsn), "127.0.0.1", 0, max_connections=8, idle_timeout=60)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        before = threading.active_count()
        clients = [socket.create_connection(httpd.server_address[:2], timeout=10) for _ in range(300)]
        # Past the bound, connections are closed at once: 292 of them read EOF.
        closed = 0
        for c in clients[8:]:
            try:
                closed += c.recv(1) == b""
            except ConnectionResetError:
                closed += 1
        assert closed == 292 and httpd.refused == 292
        assert threading.active_count() <= before + 8
        for c in clients:
            c.close()
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_an_idle_connection_is_closed_after_the_idle_timeout(dsn):
    import socket

    httpd = server.make(server.MetricsApp(dsn), "127.0.0.1", 0, max_connections=2, idle_timeout=0.5)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        idle = [socket.create_connection(httpd.server_address[:2], timeout=30) for _ in range(2)]
        for c in idle:
            c.sendall(b"GET /heal")  # half a request, then nothing
            assert c.recv(1) == b""  # the server hung up (the recv would wait 30 s otherwise)
            c.close()
        # Their slots are free again: a real probe is served.
        with urllib.request.urlopen(f"http://127.0.0.1:{httpd.server_address[1]}/healthz", timeout=10) as r:
            assert r.status == 200
    finally:
        httpd.shutdown()
        httpd.server_close()
