"""`pgsteady status`, `deploy` and `metrics` as real processes: output, JSON and exit codes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request
from datetime import timedelta

from prometheus_client.parser import text_string_to_metric_families

from pgsteady.database import with_dbname

from ..helpers import ROOT, wait_until


def pgsteady(*args: str, dsn: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PGSTEADY_DSN": dsn}
    env.pop("PGSTEADY_APP", None)
    return subprocess.run([sys.executable, "-m", "pgsteady", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)


def test_status_exit_codes_follow_health(history, dsn):
    history.healthy_fleet()
    history.succeeded("send", 50, queue="mail", at=history.ago(minutes=5))
    history.count()
    r = pgsteady("status", "--json", dsn=dsn)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["health"], out["exit_code"], out["reasons"]) == ("healthy", 0, [])
    assert {"up", "counters", "slow", "failing", "deploy"} <= out.keys()
    human = pgsteady("status", dsn=dsn)
    assert human.returncode == 0
    for heading in ("HEALTHY", "Up", "Slow", "Failing", "Deploy", "mail", "w-live"):
        assert heading in human.stdout, human.stdout

    history.waiting(10, queue="mail", due=history.ago(minutes=30))
    r = pgsteady("status", dsn=dsn)
    assert r.returncode == 1 and "DEGRADED" in r.stdout and "queue 'mail' is slow" in r.stdout
    assert pgsteady("status", "--max-wait", "7200", dsn=dsn).returncode == 0

    history.conn.execute("UPDATE pgsteady.workers SET heartbeat_at = now() - interval '10 minutes'")
    r = pgsteady("status", "--json", dsn=dsn)
    assert r.returncode == 2 and json.loads(r.stdout)["health"] == "down"
    assert pgsteady("status", "--min-workers", "0", "--max-wait", "7200", dsn=dsn).returncode == 1  # dead worker


def test_status_of_an_unreachable_database_prints_a_down_status(server_dsn):
    dsn = with_dbname(server_dsn, "no_such_database_here")
    r = pgsteady("status", dsn=dsn)
    assert r.returncode == 2 and r.stdout.startswith("DOWN") and "cannot connect to PostgreSQL" in r.stdout
    r = pgsteady("status", "--json", dsn=dsn)
    out = json.loads(r.stdout)
    assert r.returncode == 2 and out["health"] == "down" and out["up"]["database"]["reachable"] is False


def test_deploy_mark_list_and_compare(history, dsn):
    r = pgsteady("deploy", "compare", dsn=dsn)
    assert r.returncode == 2 and r.stderr.strip().startswith("pgsteady: error: no deploy marked yet")
    assert len(r.stderr.strip().splitlines()) == 1
    r = pgsteady("deploy", "mark", "v41", "--note", "warm-up", "--json", dsn=dsn)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == "v41"
    assert pgsteady("deploy", "mark", "v42", dsn=dsn).stdout.startswith("deploy 2 marked: v42 at ")
    listed = json.loads(pgsteady("deploy", "list", "--json", dsn=dsn).stdout)
    assert [d["version"] for d in listed] == ["v42", "v41"] and listed[1]["note"] == "warm-up"

    mark = history.now.replace(second=0, microsecond=0) - timedelta(minutes=60)
    history.conn.execute("UPDATE pgsteady.deploys SET marked_at = %s WHERE version = 'v42'", [mark])
    history.conn.execute("UPDATE pgsteady.deploys SET marked_at = %s WHERE version = 'v41'",
                         [mark - timedelta(hours=2)])
    for start, failed in ((mark - timedelta(minutes=55), 50), (mark + timedelta(minutes=5), 150)):
        history.succeeded("send", 1000 - failed, at=start, spread=timedelta(minutes=50))
        history.ended("send", failed, "retry_scheduled", at=start, spread=timedelta(minutes=50))
    history.count()
    r = pgsteady("deploy", "compare", dsn=dsn)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "v42" in r.stdout and "worse" in r.stdout and "rule:" in r.stdout
    out = json.loads(pgsteady("deploy", "compare", "--json", dsn=dsn).stdout)
    assert out["verdict"] == "worse" and out["tasks"][0]["task"] == "send"


def test_metrics_command_serves_the_endpoint_and_stops_on_sigterm(history, dsn):
    # SIGTERM, not SIGINT: a suite run in the background starts children with
    # SIGINT ignored, so a SIGINT would never stop the server (the old flake).
    history.succeeded("send", 3, at=history.ago(minutes=5))
    history.count()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PGSTEADY_DSN": dsn}
    proc = subprocess.Popen([sys.executable, "-m", "pgsteady", "metrics", "--port", "0"], cwd=ROOT, env=env,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    try:
        line = wait_until(proc.stderr.readline, timeout=30, what="the serving line")
        port = int(re.search(r"http://127\.0\.0\.1:(\d+)/metrics", line).group(1))
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
            families = {f.name: f for f in text_string_to_metric_families(resp.read().decode())}
        [sample] = [s for s in families["pgsteady_jobs"].samples if s.labels["outcome"] == "succeeded"]
        assert sample.value == 3
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as resp:
            assert resp.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    assert proc.returncode == 0
