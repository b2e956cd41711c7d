"""Secrets: passwords on command lines, in files others can read, and in stored job data.

Every result here is a count, a position, a mode or a name: the snapshot
holds no secret to print (local.py reduces files and command lines before
they reach it; the database read returns keys, never values).
"""

from __future__ import annotations

from collections import Counter
from typing import Iterator

from .report import FAIL, PASS, SKIP, WARN, Result
from .settings import secret_key_re
from .snapshot import Snapshot

AREA = "secrets"
_PREFER = ("put the password in PGSTEADY_DSN (the environment), a service file (PGSERVICEFILE, "
           "service=NAME in the DSN) or ~/.pgpass with mode 0600")


def command_line(snap: Snapshot) -> Iterator[Result]:
    local = snap.local
    if local.argv_secrets:
        yield Result("command_line", AREA, FAIL, "this process",
                     f"this command line holds a password in argument {', '.join(map(str, local.argv_secrets))}: "
                     "every local user sees it in ps",
                     fix=_PREFER, evidence={"positions": local.argv_secrets})
    else:
        yield Result("command_line", AREA, PASS, "this process", "no password on this command line")
    if local.processes is None:
        return
    if local.processes:
        pids = [p.pid for p in local.processes]
        yield Result("command_line", AREA, FAIL, "running pgsteady processes",
                     f"{len(pids)} running pgsteady processes have a password on their command line "
                     f"(pid {', '.join(map(str, pids[:10]))}): every local user sees it in ps",
                     fix=_PREFER + ", then restart them",
                     evidence={"processes": [{"pid": p.pid, "uid": p.uid, "positions": p.positions}
                                             for p in local.processes]})
    else:
        yield Result("command_line", AREA, PASS, "running pgsteady processes",
                     "no running pgsteady process has a password on its command line")


def files(snap: Snapshot) -> Iterator[Result]:
    local = snap.local
    if not local.files:
        yield Result("secret_files", AREA, PASS, "(none)", "no .pgpass, service file or --env-file to check")
    for f in local.files:
        evidence = {"kind": f.kind, "mode": oct(f.mode), "uid": f.uid, "secret_lines": f.secrets}
        fix = f"chmod 600 {f.path}"
        if f.mode & 0o002:
            yield Result("secret_files", AREA, FAIL, f.path,
                         f"{f.path} is writable by every local user: anyone can change where pgsteady connects "
                         "or what it trusts", fix=fix, evidence=evidence)
        elif f.kind == "pgpass" and f.mode & 0o077:
            yield Result("secret_files", AREA, FAIL, f.path,
                         f"{f.path} (mode {oct(f.mode)}) is readable beyond its owner: libpq ignores it, and "
                         f"its {f.secrets} passwords are open to others", fix=fix, evidence=evidence)
        elif f.secrets and f.mode & 0o004:
            yield Result("secret_files", AREA, FAIL, f.path,
                         f"{f.path} holds {f.secrets} secrets and every local user can read it "
                         f"(mode {oct(f.mode)})", fix=fix, evidence=evidence)
        elif f.secrets and f.mode & 0o040:
            yield Result("secret_files", AREA, WARN, f.path,
                         f"{f.path} holds {f.secrets} secrets and its group can read it (mode {oct(f.mode)})",
                         fix=fix + " unless the group is meant to", evidence=evidence)
        elif f.uid not in (local.uid, 0):
            yield Result("secret_files", AREA, WARN, f.path,
                         f"{f.path} belongs to another user (uid {f.uid}), who can change it",
                         fix=f"chown it to the user that runs pgsteady and chmod 600 {f.path}", evidence=evidence)
        else:
            what = f"holds {f.secrets} secrets, readable by its owner only" if f.secrets else "holds no secret"
            yield Result("secret_files", AREA, PASS, f.path, f"{f.path} {what} (mode {oct(f.mode)})",
                         evidence=evidence)


def stored_secrets(snap: Snapshot) -> Iterator[Result]:
    """Jobs and events whose data has secret-looking keys: masked when shown, but stored in clear."""
    rx = secret_key_re(snap.secret_pattern)
    db = snap.database
    for subject, rows, query in (("job arguments", db.job_keys, "recent_job_keys"),
                                 ("event data", db.event_keys, "recent_event_keys")):
        if rows is None:
            yield Result("stored_secrets", AREA, SKIP, subject,
                         f"cannot sample {subject}: {db.unreadable.get(query, 'not read')}")
            continue
        hits = Counter(name for name, keys in rows if any(isinstance(k, str) and rx.search(k) for k in keys))
        evidence = {"sampled": len(rows), "sample_limit": snap.sample, "with_secret_keys": sum(hits.values()),
                    "by_" + ("task" if subject == "job arguments" else "kind"): dict(hits.most_common(10))}
        if hits:
            top = ", ".join(f"{name} ({n})" for name, n in hits.most_common(3))
            yield Result("stored_secrets", AREA, WARN, subject,
                         f"{sum(hits.values())} of the {len(rows)} newest {subject} have secret-looking keys "
                         f"(values never shown; mostly {top}): they are stored in clear and kept until pruned",
                         fix="pass a reference (the id of a stored credential, a secret manager's name) instead of "
                             "the secret itself",
                         evidence=evidence)
        else:
            yield Result("stored_secrets", AREA, PASS, subject,
                         f"none of the {len(rows)} newest {subject} have secret-looking keys" if rows
                         else f"no recent {subject} to sample", evidence=evidence)
