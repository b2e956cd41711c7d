"""The production topology on one machine, for the fault suite.

- ``Server``: a PostgreSQL of the suite's own (the embedded one, in a temp
  folder), reachable over TCP with a password, so the suite can stop it,
  restart it and cut it off without touching the server other tests use.
- ``Replica``: a streaming replica of it, made with pg_basebackup.
- ``Bouncer``: Debian's PgBouncer in front of it, in session or transaction
  pool mode, with its admin console (PAUSE, RESUME, SHOW).
- ``Netns``: a network namespace joined to this one by a veth pair, whose
  link can be cut silently (blackhole routes on both ends: packets vanish,
  nothing is refused, as when a cable or a switch goes) and mended.

Everything runs as an unprivileged user when the suite runs as root, on free
loopback ports (and the veth's own private addresses), and is stopped at
teardown.
"""

from __future__ import annotations

import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

import psycopg
from psycopg import sql

from pgsteady import embedded

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _unprivileged() -> pwd.struct_passwd | None:
    """The user servers run as when we are root (PostgreSQL refuses root)."""
    if os.geteuid() != 0:
        return None
    return pwd.getpwnam(os.environ.get("PGSTEADY_SERVER_USER") or "pgsteady")


def _run_as(user: pwd.struct_passwd | None, args: list, **kwargs) -> subprocess.CompletedProcess:
    as_user = dict(user=user.pw_uid, group=user.pw_gid, extra_groups=[]) if user else {}
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120, cwd="/",
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}, **as_user, **kwargs)


def _check(proc: subprocess.CompletedProcess, what: str) -> None:
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed ({proc.returncode}): {proc.stderr.strip() or proc.stdout.strip()}")


def _wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection((host, port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {host}:{port} after {timeout}s") from None
            time.sleep(0.05)


class Server:
    """The suite's own PostgreSQL, over TCP with a password."""

    def __init__(self, home: Path, extra_listen: list[str] = (), extra_hosts: list[str] = ()) -> None:
        self.home = home
        self.port = free_port()
        self.password = secrets.token_hex(12)
        self.listen = ["127.0.0.1", *extra_listen]
        self.hosts = ["127.0.0.1/32", *extra_hosts]
        self.socket_url: str | None = None

    def dsn(self, dbname: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres:{self.password}@{host}:{self.port}/{dbname}"

    @property
    def state(self) -> dict:
        return json.loads((self.home / "embedded.json").read_text())

    def create(self) -> None:
        self.socket_url = embedded.ensure_running(home=self.home, admin=True)
        with psycopg.connect(self.socket_url, dbname="postgres", autocommit=True) as conn:
            conn.execute(sql.SQL("ALTER ROLE postgres PASSWORD {}").format(sql.Literal(self.password)))
            conn.execute(sql.SQL("ALTER SYSTEM SET listen_addresses = {}").format(sql.Literal(",".join(self.listen))))
            conn.execute(sql.SQL("ALTER SYSTEM SET port = {}").format(sql.Literal(self.port)))
            conn.execute("ALTER SYSTEM SET max_connections = 200")
            hba = conn.execute("SHOW hba_file").fetchone()[0]
        lines = "".join(f"host all all {h} scram-sha-256\nhost replication all {h} scram-sha-256\n"
                        for h in self.hosts)
        path = Path(hba)
        text = path.read_text()
        with open(path, "r+") as f:  # in place: the file stays the server user's
            f.write(lines + text)
        self.restart()

    def stop(self) -> None:
        embedded.stop(home=self.home)

    def start(self) -> None:
        self.socket_url = embedded.ensure_running(home=self.home, admin=True)
        _wait_port("127.0.0.1", self.port)

    def restart(self) -> None:
        self.stop()
        self.start()


class Replica:
    """A streaming replica of ``primary``, made with pg_basebackup."""

    def __init__(self, primary: Server, folder: Path) -> None:
        self.primary = primary
        self.folder = folder
        self.port = free_port()
        self.user = _unprivileged()
        self.bin = Path(primary.state["bin_dir"])

    def dsn(self, dbname: str = "postgres") -> str:
        return f"postgresql://postgres:{self.primary.password}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if self.user:
            os.chown(self.folder, self.user.pw_uid, self.user.pw_gid)
        data, sockets = self.folder / "data", self.folder / "run"
        for d in (sockets,):
            d.mkdir(mode=0o700, exist_ok=True)
            if self.user:
                os.chown(d, self.user.pw_uid, self.user.pw_gid)
        socket_dir = self.primary.state["socket_dir"]
        _check(_run_as(self.user, [self.bin / "pg_basebackup", "-D", data, "-R", "-X", "stream", "-c", "fast",
                                   "-h", socket_dir, "-p", self.primary.port, "-U", "postgres"]), "pg_basebackup")
        opts = f"-p {self.port} -k {sockets} -c listen_addresses=127.0.0.1 -c hot_standby_feedback=on"
        _check(_run_as(self.user, [self.bin / "pg_ctl", "start", "-D", data, "-w", "-t", "60",
                                   "-l", self.folder / "replica.log", "-o", opts], start_new_session=True),
               "starting the replica")
        _wait_port("127.0.0.1", self.port)

    def stop(self) -> None:
        data = self.folder / "data"
        if (data / "postmaster.pid").exists():
            _run_as(self.user, [self.bin / "pg_ctl", "stop", "-D", data, "-m", "immediate", "-w"])

    def wait_caught_up(self, timeout: float = 30.0) -> None:
        """Until the replica has replayed everything the primary wrote so far."""
        with psycopg.connect(self.primary.dsn(), autocommit=True) as p:
            lsn = p.execute("SELECT pg_current_wal_lsn()").fetchone()[0]
        deadline = time.monotonic() + timeout
        with psycopg.connect(self.dsn(), autocommit=True) as r:
            while not r.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [lsn]).fetchone()[0]:
                if time.monotonic() > deadline:
                    raise AssertionError(f"the replica did not replay up to {lsn} in {timeout}s")
                time.sleep(0.05)


class Bouncer:
    """PgBouncer in front of a Server, in one pool mode."""

    def __init__(self, server: Server, mode: str, listen: list[str] = ()) -> None:
        self.server = server
        self.mode = mode
        self.port = free_port()
        self.listen = ["127.0.0.1", *listen]
        self.folder = Path(tempfile.mkdtemp(prefix=f"pgsteady-bouncer-{mode}-"))
        self.proc: subprocess.Popen | None = None
        self.user = pwd.getpwnam("nobody") if os.geteuid() == 0 else None  # pgbouncer refuses root

    def dsn(self, dbname: str = "postgres", host: str = "127.0.0.1") -> str:
        return f"postgresql://postgres:{self.server.password}@{host}:{self.port}/{quote(dbname)}"

    def start(self) -> None:
        ini, users = self.folder / "pgbouncer.ini", self.folder / "users.txt"
        users.write_text(f'"postgres" "{self.server.password}"\n')
        ini.write_text(f"""[databases]
* = host=127.0.0.1 port={self.server.port}

[pgbouncer]
listen_addr = {",".join(self.listen)}
listen_port = {self.port}
unix_socket_dir =
auth_type = scram-sha-256
auth_file = {users}
admin_users = postgres
pool_mode = {self.mode}
default_pool_size = 60
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
logfile = {self.folder / "pgbouncer.log"}
pidfile = {self.folder / "pgbouncer.pid"}
""")
        os.chmod(self.folder, 0o700)
        for path in (ini, users):
            os.chmod(path, 0o600)
        if self.user:
            for path in (self.folder, ini, users):
                os.chown(path, self.user.pw_uid, self.user.pw_gid)
        args = [PGBOUNCER, *(["-u", self.user.pw_name] if self.user else []), str(ini)]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        _wait_port("127.0.0.1", self.port)

    def admin(self, command: str) -> list[tuple]:
        """A command on the admin console (simple protocol only, as it requires)."""
        with psycopg.connect(self.dsn("pgbouncer"), autocommit=True) as conn:
            res = conn.pgconn.exec_(command.encode())
            if res.error_message:
                raise RuntimeError(res.error_message.decode())
            return [tuple(res.get_value(r, c) and res.get_value(r, c).decode() for c in range(res.nfields))
                    for r in range(res.ntuples)]

    def log(self) -> str:
        try:
            return (self.folder / "pgbouncer.log").read_text()
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


class Netns:
    """A network namespace on a veth pair: host end ``host_ip``, inside ``inner_ip``."""

    def __init__(self) -> None:
        tag = secrets.token_hex(3)
        self.name = f"pgsteady-{tag}"
        self.host_dev, self.inner_dev = f"psh{tag}", f"psn{tag}"
        octet = int(tag[:2], 16) % 250 + 1
        self.host_ip, self.inner_ip = f"10.213.{octet}.1", f"10.213.{octet}.2"
        self.subnet = f"10.213.{octet}.0/30"
        self.cut_now = False

    @staticmethod
    def available() -> str | None:
        """None when namespaces can be made here, else the reason they cannot."""
        if os.geteuid() != 0:
            return "cutting a worker's link needs root (a network namespace and a veth pair)"
        if shutil.which("ip") is None:
            return "the ip command (iproute2) is not installed"
        return None

    def _ip(self, *args: str, inside: bool = False) -> None:
        cmd = ["ip", "netns", "exec", self.name, "ip", *args] if inside else ["ip", *args]
        _check(subprocess.run(cmd, capture_output=True, text=True, timeout=30), " ".join(cmd))

    def create(self) -> None:
        self._ip("netns", "add", self.name)
        self._ip("link", "add", self.host_dev, "type", "veth", "peer", "name", self.inner_dev)
        self._ip("link", "set", self.inner_dev, "netns", self.name)
        self._ip("addr", "add", f"{self.host_ip}/30", "dev", self.host_dev)
        self._ip("link", "set", self.host_dev, "up")
        self._ip("addr", "add", f"{self.inner_ip}/30", "dev", self.inner_dev, inside=True)
        self._ip("link", "set", self.inner_dev, "up", inside=True)
        self._ip("link", "set", "lo", "up", inside=True)

    def command(self, args: list[str]) -> list[str]:
        """``args`` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *args]

    def cut(self) -> None:
        """Packets both ways vanish: no reset, no refusal, only silence."""
        self._ip("route", "add", "blackhole", f"{self.inner_ip}/32")
        self._ip("route", "add", "blackhole", f"{self.host_ip}/32", inside=True)
        self.cut_now = True

    def mend(self) -> None:
        if self.cut_now:
            self._ip("route", "del", "blackhole", f"{self.inner_ip}/32")
            self._ip("route", "del", "blackhole", f"{self.host_ip}/32", inside=True)
            self.cut_now = False

    def destroy(self) -> None:
        subprocess.run(["ip", "link", "del", self.host_dev], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.name], capture_output=True)
