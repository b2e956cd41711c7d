"""`cache test`: the examples on a real nginx, in front of an origin that counts hits.

Our evaluator agreeing with itself proves little; this starts Debian's nginx
with the compiled configuration (in a temporary directory, on a free loopback
port, with its own pid file, logs and cache) in front of a small origin
(``http.server`` in a thread) and requests every example twice. An example
that must be cached may reach the origin at most once; one that must not be
cached must reach it both times.

nginx runs in the foreground (``-g 'daemon off;'``) as a child of this
process and is stopped by its pid. As root, its workers run as ``nobody``
(the temporary directory is handed to that user); otherwise as the caller.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from ..errors import PgsteadyError
from ..security.settings import CACHE_TEST_START_TIMEOUT
from . import requests
from .rules import Example, Rules
from .targets import Options
from .targets import nginx as nginx_target

NGINX_CANDIDATES = ("/usr/sbin/nginx", "nginx")
PURGE_MODULES = ("/usr/lib/nginx/modules/ngx_http_cache_purge_module.so",
                 "/usr/share/nginx/modules/ngx_http_cache_purge_module.so")


class ProxyUnavailable(PgsteadyError):
    """nginx is missing or would not start (exit 2: nothing was tested)."""


def nginx_binary() -> str | None:
    for c in NGINX_CANDIDATES:
        found = shutil.which(c)
        if found:
            return found
    return None


def purge_module() -> str | None:
    return next((p for p in PURGE_MODULES if os.path.exists(p)), None)


class Origin:
    """An HTTP origin on a free loopback port that counts the requests it answers."""

    def __init__(self) -> None:
        self.hits = 0
        self.seen: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        origin = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(min(length, 1 << 20))
                with origin._lock:
                    origin.hits += 1
                    origin.seen.append((self.command, self.path))
                    n = origin.hits
                body = f"origin answer {n} for {self.command} {self.path}\n".encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _answer

            def log_message(self, *args) -> None:  # quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, name="pgsteady-test-origin", daemon=True)

    def __enter__(self) -> Origin:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """A private nginx serving ``rules`` on 127.0.0.1:<port>, proxying to ``origin_port``."""

    def __init__(self, rules: Rules, origin_port: int, *, binary: str | None = None) -> None:
        self.binary = binary or nginx_binary()
        if self.binary is None:
            raise ProxyUnavailable("nginx is not installed; install Debian's: apt-get install nginx libnginx-mod-http-cache-purge")
        self.rules = rules
        self.origin_port = origin_port
        self.module = purge_module()
        self.dir = Path(tempfile.mkdtemp(prefix="pgsteady-nginx-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None

    def config(self) -> str:
        opts = Options(listen=f"127.0.0.1:{self.port}", origin=f"http://127.0.0.1:{self.origin_port}",
                       cache_dir=str(self.dir / "cache"), purge_module=self.module is not None)
        (self.dir / "rules.conf").write_text(nginx_target.compile(self.rules, opts))
        user = ""
        if os.geteuid() == 0:
            import grp
            import pwd

            nobody = pwd.getpwnam("nobody")
            user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
        d = self.dir
        return "\n".join([
            f"load_module {self.module};" if self.module else "# no cache purge module installed",
            user, "worker_processes 1;", f"pid {d}/nginx.pid;", f"error_log {d}/error.log warn;",
            "events { worker_connections 128; }",
            "http {", "    access_log off;",
            *(f"    {k}_temp_path {d}/tmp_{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
            f"    include {d}/rules.conf;", "}", ""])

    def start(self) -> Nginx:
        for _ in range(3):  # a free port can be taken between our probe and nginx's bind
            self.port = free_port()
            (self.dir / "nginx.conf").write_text(self.config())
            if os.geteuid() == 0:
                for p in [self.dir, *self.dir.rglob("*")]:
                    shutil.chown(p, "nobody")
            self.proc = subprocess.Popen(
                [self.binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(self.dir / "nginx.conf"),
                 "-g", "daemon off;"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if self._wait_ready():
                return self
            err = self.proc.stderr.read() if self.proc.stderr else ""
            if "Address already in use" not in err:
                self.stop()
                last = (err.strip().splitlines() or ["(no output)"])[-1]
                raise ProxyUnavailable(f"nginx would not start with the compiled configuration: {last}")
        self.stop()
        raise ProxyUnavailable("nginx could not bind a free loopback port after 3 tries")

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + CACHE_TEST_START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.02)
        return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc is not None and self.proc.stderr:
            self.proc.stderr.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def request(self, method: str, target: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            body = b"" if method in ("POST", "PUT", "PATCH") else None
            conn.request(method, target, body=body, headers={"Host": "localhost", **(headers or {})})
            resp = conn.getresponse()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
        finally:
            conn.close()


@dataclass
class ExampleRun:
    rule: str
    example: Example
    origin_hits: int
    status: int
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def as_intended(self) -> bool:
        return self.origin_hits <= 1 if self.example.cached else self.origin_hits == 2

    def to_json(self) -> dict:
        return {"rule": self.rule, "example": self.example.label(), "must_cache": self.example.cached,
                "origin_hits": self.origin_hits, "as_intended": self.as_intended, "status": self.status,
                "headers": self.headers}


REPORTED = ("cache-control", "vary", "x-cache")


def example_headers(ex: Example) -> dict[str, str]:
    headers = dict(ex.headers)
    if ex.cookies:
        headers["Cookie"] = requests.cookie_header(ex.cookies)
    return headers


def run(rules: Rules) -> list[ExampleRun]:
    """Every example of every rule, twice each, against a private nginx."""
    out: list[ExampleRun] = []
    with Origin() as origin, Nginx(rules, origin.port) as proxy:
        for rule in rules.rules:
            for ex in rule.examples:
                path, query, _host = requests.parse_url(ex.url)
                target = path + (f"?{query}" if query else "")
                before = origin.hits
                status, headers = 0, {}
                for _ in range(2):
                    status, headers, _body = proxy.request(ex.method, target, example_headers(ex))
                out.append(ExampleRun(rule.name, ex, origin.hits - before, status,
                                      {k: headers[k] for k in REPORTED if k in headers}))
    return out

