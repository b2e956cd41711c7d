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

import abc
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
from . import targets
from .targets import Options

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
                keys = " ".join(seg for seg in self.path.split("?")[0].split("/") if seg) or "home"
                self.send_response(200)
                self.send_header("Surrogate-Key", keys)  # /posts/hello-world: "posts hello-world"
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


class Proxy(abc.ABC):
    """A private proxy serving ``rules`` on 127.0.0.1:<port> in front of ``origin_port``.

    Subclasses say how to configure and start it; this class owns the temporary
    directory, the free port, readiness (a connection accepted), and stopping
    the child it started, by its pid."""

    kind = "proxy"
    install = ""

    def __init__(self, rules: Rules, origin_port: int, *, binary: str | None = None) -> None:
        self.binary = binary or self.find()
        if self.binary is None:
            raise ProxyUnavailable(f"{self.kind} is not installed; install Debian's: apt-get install {self.install}")
        self.rules = rules
        self.origin_port = origin_port
        self.dir = Path(tempfile.mkdtemp(prefix=f"pgsteady-{self.kind}-"))
        self.port = 0
        self.proc: subprocess.Popen | None = None

    @classmethod
    @abc.abstractmethod
    def find(cls) -> str | None:
        """The proxy's binary, or None."""

    @abc.abstractmethod
    def prepare(self) -> list[str]:
        """Write the configuration for self.port; return the command line."""

    def start(self) -> Proxy:
        for _ in range(3):  # a free port can be taken between our probe and the proxy's bind
            self.port = free_port()
            command = self.prepare()
            self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            if self._wait_ready():
                return self
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            err = self.proc.stderr.read() if self.proc.stderr else ""
            if "Address already in use" not in err and "Could not get socket" not in err:
                self.stop()
                lines = [ln for ln in err.strip().splitlines() if ln.strip() and not ln.startswith(("Debug:", "Info:"))]
                raise ProxyUnavailable(f"{self.kind} would not start with the compiled configuration: "
                                       f"{' '.join(lines[-3:]) or '(no output)'}")
        self.stop()
        raise ProxyUnavailable(f"{self.kind} could not bind a free loopback port after 3 tries")

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

    def __enter__(self) -> Proxy:
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

    def options(self) -> Options:
        return Options(listen=f"127.0.0.1:{self.port}", origin=f"http://127.0.0.1:{self.origin_port}",
                       cache_dir=str(self.dir / "cache"), purge_module=purge_module() is not None)


class Nginx(Proxy):
    """Debian's nginx, in the foreground, with its pid, logs, temp paths and cache in the temporary directory."""

    kind = "nginx"
    install = "nginx libnginx-mod-http-cache-purge"

    @classmethod
    def find(cls) -> str | None:
        return nginx_binary()

    def config(self) -> str:
        (self.dir / "rules.conf").write_text(targets.compile(self.rules, "nginx", self.options()))
        user = ""
        if os.geteuid() == 0:  # workers as nobody, who is given the temporary directory
            import grp
            import pwd

            nobody = pwd.getpwnam("nobody")
            user = f"user nobody {grp.getgrgid(nobody.pw_gid).gr_name};"
        d, module = self.dir, purge_module()
        return "\n".join([
            f"load_module {module};" if module else "# no cache purge module installed",
            user, "worker_processes 1;", f"pid {d}/nginx.pid;", f"error_log {d}/error.log warn;",
            "events { worker_connections 128; }",
            "http {", "    access_log off;",
            *(f"    {k}_temp_path {d}/tmp_{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")),
            f"    include {d}/rules.conf;", "}", ""])

    def prepare(self) -> list[str]:
        (self.dir / "nginx.conf").write_text(self.config())
        if os.geteuid() == 0:
            for p in [self.dir, *self.dir.rglob("*")]:
                shutil.chown(p, "nobody")
        return [self.binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(self.dir / "nginx.conf"),
                "-g", "daemon off;"]


class Varnish(Proxy):
    """Debian's varnishd in the foreground (-F), its working directory in the temporary one.

    As root it drops to its own ``varnish``/``vcache`` users (the package
    creates them), which must be able to read the VCL: the directory is 0755.
    """

    kind = "varnish"
    install = "varnish"

    @classmethod
    def find(cls) -> str | None:
        return shutil.which("varnishd") or next((p for p in ("/usr/sbin/varnishd",) if os.path.exists(p)), None)

    def prepare(self) -> list[str]:
        os.chmod(self.dir, 0o755)
        vcl = self.dir / "rules.vcl"
        vcl.write_text(targets.compile(self.rules, "varnish", self.options()))
        vcl.chmod(0o644)
        return [self.binary, "-F", "-n", str(self.dir / "work"), "-a", f"127.0.0.1:{self.port}", "-f", str(vcl),
                "-s", "malloc,64m", "-T", "none"]


PROXIES = {"nginx": Nginx, "varnish": Varnish}


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


def run(rules: Rules, proxy: str = "nginx") -> list[ExampleRun]:
    """Every example of every rule, twice each, against a private proxy (nginx or varnish)."""
    out: list[ExampleRun] = []
    with Origin() as origin, PROXIES[proxy](rules, origin.port) as proxy:
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

