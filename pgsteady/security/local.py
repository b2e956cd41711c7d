"""The local facts of the secrets checks: command lines and files that hold passwords.

Nothing read here is kept: a file is reduced to its mode, its owner and the
number of lines that hold a secret; a command line to the positions of its
secret-bearing arguments. A secret never reaches the
snapshot, so no check and no report can print one.
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ..database import scrub
from ..errors import ConfigError
from .settings import secret_key_re

MAX_FILE_BYTES = 1 << 20  # files the user names are read this far and no further
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*(.*?)\s*$")
_SYSTEM_SERVICE_FILES = ("/etc/postgresql-common/pg_service.conf", "/etc/pg_service.conf")


@dataclass
class FileFact:
    path: str
    kind: str          # pgpass | service | env
    mode: int          # permission bits
    uid: int
    secrets: int       # lines holding a password or a secret-looking key's value


@dataclass
class ProcessFact:
    pid: int
    uid: int
    positions: list[int]   # which arguments hold a secret


@dataclass
class LocalFacts:
    argv_secrets: list[int]                # positions in this process's argv that hold a password
    processes: list[ProcessFact] | None    # None when not scanned
    files: list[FileFact] = field(default_factory=list)
    uid: int = -1


def secret_positions(args: Iterable[str]) -> list[int]:
    """Positions of command-line arguments that carry a password."""
    return [i for i, arg in enumerate(args) if scrub(arg) != arg or arg.upper().startswith("PGPASSWORD=")]


def gather(argv: list[str], environ: Mapping[str, str], env_files: Iterable[str] = (), *,
           home: Path | None = None, scan_processes: bool = True, pattern: str | None = None) -> LocalFacts:
    home = home or Path.home()
    facts = LocalFacts(argv_secrets=secret_positions(argv),
                       processes=_processes() if scan_processes else None, uid=os.getuid())
    rx = secret_key_re(pattern)
    pgpass = Path(environ.get("PGPASSFILE") or home / ".pgpass")
    services = [Path(environ.get("PGSERVICEFILE") or home / ".pg_service.conf")]
    if environ.get("PGSYSCONFDIR"):
        services.append(Path(environ["PGSYSCONFDIR"]) / "pg_service.conf")
    else:
        services += [Path(p) for p in _SYSTEM_SERVICE_FILES]
    for path, kind in [(pgpass, "pgpass"), *((p, "service") for p in services)]:
        fact = _file(path, kind, rx, required=False)
        if fact:
            facts.files.append(fact)
    for name in env_files:
        facts.files.append(_file(Path(name), "env", rx, required=True))
    return facts


def _file(path: Path, kind: str, rx: re.Pattern[str], *, required: bool) -> FileFact | None:
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError(f"{path} is not a regular file; give --env-file a file of KEY=value lines")
        with path.open("rb") as fh:
            text = fh.read(MAX_FILE_BYTES).decode("utf-8", errors="replace")
    except FileNotFoundError:
        if required:
            raise ConfigError(f"--env-file {path}: no such file; give the path of a file of KEY=value lines") from None
        return None
    except PermissionError:
        if required:
            raise ConfigError(f"--env-file {path}: cannot read it (permission denied); run the check as its owner") from None
        return None
    return FileFact(str(path), kind, stat.S_IMODE(st.st_mode), st.st_uid, _secret_lines(text, kind, rx))


def _secret_lines(text: str, kind: str, rx: re.Pattern[str]) -> int:
    count = 0
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if kind == "pgpass":
            # host:port:db:user:password; a line without the fifth field holds no password.
            count += len(re.split(r"(?<!\\):", stripped)) >= 5
        elif scrub(stripped) != stripped:
            count += 1
        elif kind == "env":
            m = _ENV_LINE.match(stripped)
            count += bool(m and m.group(2).strip("'\"") and rx.search(m.group(1)))
    return count


def _processes() -> list[ProcessFact]:
    """pgsteady processes of any user whose command line holds a password: every
    local user can read /proc/PID/cmdline (what `ps` shows)."""
    found = []
    proc = Path("/proc")
    if not proc.is_dir():
        return found
    for entry in proc.iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue  # this process is the argv check's
        try:
            raw = (entry / "cmdline").read_bytes()
            uid = entry.stat().st_uid
        except OSError:
            continue
        args = raw.decode("utf-8", errors="replace").split("\0")
        if not any("pgsteady" in a for a in args):
            continue
        positions = secret_positions(args)
        if positions:
            found.append(ProcessFact(int(entry.name), uid, positions))
    return sorted(found, key=lambda p: p.pid)
