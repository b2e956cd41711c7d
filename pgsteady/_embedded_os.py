"""What the embedded server needs from the operating system, done safely as root.

The server user (see ``embedded.py``) owns ``data/`` and the socket folder, so
anything there may be a path it planted. Root reaches those folders only
through the helpers below: a descriptor of the folder, no-follow opens,
exclusive creation, rename to replace, fchown/fchmod on descriptors. Programs
run as the server user with a small fixed environment, and a failure is one
EmbeddedError line.
"""

from __future__ import annotations

import contextlib
import logging
import errno
import os
import pwd
import stat
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import EmbeddedError

log = logging.getLogger("pgsteady.embedded")


def is_private_dir(path: Path, owner: int) -> bool:
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == owner and not st.st_mode & 0o077


def own_dir(path: Path, user: User | None) -> None:
    fd = open_dir(path)
    try:
        if user:
            os.fchown(fd, user.uid, user.gid)
        os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


@dataclass
class User:
    name: str
    uid: int
    gid: int
    groups: list[int]


def server_user_name() -> str:
    if os.geteuid() != 0:
        return pwd.getpwuid(os.geteuid()).pw_name
    return os.environ.get("PGSTEADY_SERVER_USER") or "pgsteady"


def server_user() -> User | None:
    """The user the server runs as when we are root (created if missing); None when we are not."""
    if os.geteuid() != 0:
        return None
    name = server_user_name()
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        log.info("creating the system user %s to run the embedded PostgreSQL", name)
        run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name], None,
             f"cannot create the system user {name}", hint="create it yourself or set PGSTEADY_SERVER_USER")
        pw = pwd.getpwnam(name)
    if pw.pw_uid == 0:
        raise EmbeddedError(f"PGSTEADY_SERVER_USER={name} is root, and PostgreSQL refuses to run as root; pick an unprivileged user")
    return User(name, pw.pw_uid, pw.pw_gid, os.getgrouplist(name, pw.pw_gid))


def user_can(user: User, test: str, path: Path) -> bool:
    """Ask the system, not the mode bits, whether the server user can reach a path."""
    return run(["test", test, path], user, check=False).returncode == 0


def check_root_only(home: Path) -> None:
    """As root: refuse a home that another user could write (or swap a parent of).

    Everything root does in the home (state, lock, log, binaries) relies on
    nobody else being able to plant a path there."""
    for folder in [home, *home.parents]:
        try:
            st = os.lstat(folder)
        except FileNotFoundError:
            continue
        sticky = st.st_mode & stat.S_ISVTX
        if st.st_uid != 0 or (st.st_mode & 0o022 and not sticky):
            raise EmbeddedError(f"PGSTEADY_HOME {home}: {folder} can be written by users other than root "
                                f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); as root pgsteady keeps "
                                "the embedded server only where root alone can write, for example "
                                "PGSTEADY_HOME=/var/lib/pgsteady")


# Files in folders the server user owns (data/, the socket folder) are only
# touched through these: a descriptor of the folder, then no-follow opens,
# exclusive creation and rename relative to it.

_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # O_NONBLOCK: a planted FIFO cannot hang an open


def open_dir(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)


def read_untrusted(path: Path, limit: int = 4096) -> str:
    """A small regular file that another user may control; OSError if it is anything else."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", str(path))
        return os.read(fd, limit).decode("utf-8", "replace")
    finally:
        os.close(fd)


def replace_file(folder: Path, name: str, text: str, user: User | None, mode: int) -> None:
    """Write folder/name afresh: a new file, owned and moded through its descriptor, renamed into place."""
    dfd = open_dir(folder)
    scratch = f".{name}.tmp{os.getpid()}"
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(scratch, dir_fd=dfd)
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode, dir_fd=dfd)
        try:
            if user:
                os.fchown(fd, user.uid, user.gid)
            os.fchmod(fd, mode)
            with os.fdopen(os.dup(fd), "w", encoding="utf-8") as f:
                f.write(text)
        finally:
            os.close(fd)
        os.rename(scratch, name, src_dir_fd=dfd, dst_dir_fd=dfd)  # replaces a planted symlink, never follows it
    finally:
        os.close(dfd)


def create_file(folder: Path, name: str, user: User | None, mode: int) -> None:
    """Make folder/name an empty file of the server user's if nothing is there; leave an existing one alone."""
    dfd = open_dir(folder)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW, mode, dir_fd=dfd)
    except FileExistsError:
        return
    finally:
        os.close(dfd)
    try:
        if user:
            os.fchown(fd, user.uid, user.gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def append_owned(folder: Path, name: str, text: str, user: User | None) -> None:
    """Append to a file the server user made, only if it is its own regular file with one link."""
    dfd = open_dir(folder)
    try:
        fd = os.open(name, os.O_WRONLY | os.O_APPEND | _NOFOLLOW, dir_fd=dfd)
    except OSError as exc:
        raise EmbeddedError(f"cannot open {folder / name} ({exc.strerror}); remove {folder} and start again") from None
    finally:
        os.close(dfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_uid != (user.uid if user else os.geteuid()):
            raise EmbeddedError(f"{folder / name} is not a plain file of the server user; remove {folder} and start again")
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def run(args: list, user: User | None, what: str = "", *, check: bool = True, hint: str = "",
         new_session: bool = False) -> subprocess.CompletedProcess:
    """Run a program, as the server user if given; a failure becomes one EmbeddedError line."""
    # A small, fixed environment: PGDATA, PGPORT or a locale the machine lacks
    # in the caller's environment must not change what initdb or the server do.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    as_user = dict(user=user.uid, group=user.gid, extra_groups=user.groups) if user else {}
    try:
        proc = subprocess.run([str(a) for a in args], env=env, cwd="/", stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120, start_new_session=new_session, **as_user)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise EmbeddedError(f"{what or args[0]}: {exc}") from None
    if check and proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).splitlines() if ln.strip()]
        reason = lines[-1].strip() if lines else f"exit code {proc.returncode}"
        raise EmbeddedError(f"{what}: {reason}" + (f"; {hint}" if hint else ""))
    return proc
