"""The benchmark suite in smoke mode, so that it cannot rot.

Tiny counts, pgsteady and the plain-SQL reference only (no peer venvs, no
network), one pass, against the test server. It checks the shape of what the
suite reports, never how fast anything was: speed is judged by the full
suite, side by side, as ratios (docs/benchmarks.md).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

from bench.run import MAIN, SCALE
from tests.helpers import ROOT


def _numbers(metrics: dict) -> list[float]:
    return [s["median"] for s in metrics.values()]


def test_smoke_run_reports_every_scenario_with_figures_and_ratios(server_dsn, tmp_path):
    out = tmp_path / "smoke.json"
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--dsn", server_dsn, "--json", str(out), "--no-write-docs"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())

    assert results["mode"] == "smoke"
    assert set(results["scenarios"]) == set(MAIN + SCALE)
    for name, sc in results["scenarios"].items():
        if sc.get("skipped"):
            # Only a command this pgsteady does not have yet may be skipped.
            assert "no `" in sc["skipped"], (name, sc["skipped"])
            continue
        assert not sc["errors"], (name, sc["errors"])
        who = ["pgsteady"] if name == "memory" else ["pgsteady", "plain_sql"] if name in MAIN else ["empty", "loaded"]
        assert set(sc["summary"]) == set(who), name
        for system in who:
            values = _numbers(sc["summary"][system])
            assert values and all(math.isfinite(v) and v > 0 for v in values), (name, system, values)
        if name == "memory":  # one system: figures, no ratio
            assert {"max_rss_mb", "growth_after_first_tenth"} <= set(sc["summary"]["pgsteady"])
            continue
        pair = "pgsteady/plain_sql" if name in MAIN else "loaded/empty"
        assert pair in sc["ratios"], (name, sc["ratios"])
        assert all(math.isfinite(v) and v > 0 for v in _numbers(sc["ratios"][pair])), name

    assert set(results["scenarios"]["latency"]["summary"]["pgsteady"]) == {"p50_ms", "p95_ms", "p99_ms"}
    assert results["systems"]["pgsteady"]["versions"]["pgsteady"]
    assert results["postgres"]["fsync"] == "on"
    # The table a person reads lists every scenario too.
    for name in MAIN + SCALE:
        assert f"| {name} |" in proc.stdout
