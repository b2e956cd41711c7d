"""Fixtures for the cache tests: the template as a file, and the real nginx they need."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pgsteady.cache import proxytest
from pgsteady.cache.template import template

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def rules_file(tmp_path: Path) -> Path:
    path = tmp_path / "cache-rules.toml"
    path.write_text(template(str(path)))
    return path


def needs_nginx() -> None:
    """Skip without nginx, except under CI, where .ci/run installs it and its absence is a failure."""
    if proxytest.nginx_binary() is None:
        if os.environ.get("CI"):
            pytest.fail("nginx is missing under CI; .ci/run installs nginx libnginx-mod-http-cache-purge")
        pytest.skip("nginx is not installed (apt-get install nginx libnginx-mod-http-cache-purge)")


def needs_varnish() -> None:
    if proxytest.Varnish.find() is None:
        if os.environ.get("CI"):
            pytest.fail("varnishd is missing under CI; .ci/run installs varnish")
        pytest.skip("varnish is not installed (apt-get install varnish)")


def needs_purge_module() -> None:
    needs_nginx()
    if proxytest.purge_module() is None:
        if os.environ.get("CI"):
            pytest.fail("the nginx cache purge module is missing under CI; .ci/run installs libnginx-mod-http-cache-purge")
        pytest.skip("libnginx-mod-http-cache-purge is not installed")


def pgsteady(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """The `pgsteady` command in a real process: exit codes and stderr as a user meets them."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pgsteady", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=120)


def one_line_error(result: subprocess.CompletedProcess, *needles: str) -> str:
    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgsteady: error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
