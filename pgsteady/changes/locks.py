"""What one statement costs the others: how long it ran, which locks it held for how long, and
whether it rewrote the table.

Two views of the locks, because each alone misses something:

    sampler   a second connection reads pg_locks for the statement's backend every few
              milliseconds while it runs: it sees locks of any statement, also one that
              cannot run in a transaction (CONCURRENTLY), for as long as they are held
    self      a statement that can run in a transaction runs in one, and before the
              COMMIT its own backend reads pg_locks: every lock it took is still held
              there, so none is missed however fast the statement was

A lock taken by the statement is held from (about) its start to the COMMIT,
so for ``self`` the time held is the statement's time; for the sampler it is
the span between the first and last sample that saw it.

A rewrite is read from ``pg_relation_filenode``: a table (or index) whose
file changed under the same oid was written anew.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from ..database import connect
from ..indexes import sandbox
from ..queries import Queries
from ..indexes import probes

# From weakest to strongest, with what each one makes other sessions wait for.
MODES = {
    "AccessShareLock": "only ACCESS EXCLUSIVE (DDL that rewrites or drops)",
    "RowShareLock": "EXCLUSIVE and ACCESS EXCLUSIVE",
    "RowExclusiveLock": "SHARE and stronger (CREATE INDEX, ALTER TABLE)",
    "ShareUpdateExclusiveLock": "other DDL, VACUUM and ANALYZE; reads and writes go on",
    "ShareLock": "writes (INSERT, UPDATE, DELETE); reads go on",
    "ShareRowExclusiveLock": "writes; reads go on",
    "ExclusiveLock": "writes and SELECT ... FOR UPDATE; plain reads go on",
    "AccessExclusiveLock": "every read and write",
}
SAMPLE_SECONDS = 0.005


def strongest(modes) -> str | None:
    order = list(MODES)
    found = [m for m in modes if m in MODES]
    return max(found, key=order.index) if found else None


def blocks(mode: str | None) -> str:
    """What other sessions wait for while ``mode`` is held (the one home of that table)."""
    return MODES.get(mode or "", "nothing")


class LockSampler:
    """Reads pg_locks for one backend from a connection of its own until stopped."""

    def __init__(self, dsn: str, q: Queries, pid: int) -> None:
        self.seen: dict[tuple[str, str], list[float]] = {}  # (relation, mode) -> [first, last] (monotonic)
        self.samples = 0
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(dsn, q, pid), daemon=True)
        self._thread.start()
        self._ready.wait(5)

    def _watch(self, dsn: str, q: Queries, pid: int) -> None:
        try:
            with connect(dsn, autocommit=True) as conn:
                self._ready.set()
                while True:
                    now = time.monotonic()
                    for lock in probes.locks_of_backend(conn, pid):
                        if lock["granted"]:
                            span = self.seen.setdefault((lock["relation"], lock["mode"]), [now, now])
                            span[1] = now
                    self.samples += 1
                    if self._stop.wait(SAMPLE_SECONDS):
                        return
        except psycopg.Error:  # sampling is a second opinion; the self view remains
            self._ready.set()

    def stop(self) -> dict[tuple[str, str], float]:
        self._stop.set()
        self._thread.join(5)
        return {key: round(last - first + SAMPLE_SECONDS, 3) for key, (first, last) in self.seen.items()}


def files(conn: psycopg.Connection, q: Queries, table_oids: list[int]) -> dict[str, tuple[int, str]]:
    """schema.relname -> (filenode, relkind) of the tables, their TOAST tables and their indexes."""
    found: dict[str, tuple[int, str]] = {}
    for oid in table_oids:
        for rel in probes.relation_files(conn, oid):
            found[rel["relname"]] = (rel["filenode"], rel["relkind"])
    return found


def measure(conn: psycopg.Connection, dsn: str, q: Queries, text: str, *, transactional: bool,
            table_oids: list[int], schemas: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``text`` on ``conn`` (autocommit) and say what it cost.

    ``schemas`` maps the schema of a copy to the original's, so that the
    figures name the tables a reader knows.
    """
    def back(name: str) -> str:
        schema, _, rel = name.partition(".")
        return f"{(schemas or {}).get(schema, schema)}.{rel}" if rel else name

    before = files(conn, q, table_oids)
    sampler = LockSampler(dsn, q, conn.info.backend_pid)
    held: list[dict[str, Any]] = []
    began = time.monotonic()
    try:
        if transactional:
            with conn.transaction(), conn.cursor() as cur:
                sandbox.execute_one(cur, text)  # one statement, as the parser read it
                ran = time.monotonic() - began
                held = probes.locks_of_backend(conn, conn.info.backend_pid)
        else:
            with conn.cursor() as cur:
                sandbox.execute_one(cur, text)
            ran = time.monotonic() - began
    finally:
        sampled = sampler.stop()
    total = time.monotonic() - began
    locks: dict[tuple[str, str], dict[str, Any]] = {}
    for lock in held:
        if lock["granted"]:
            locks[(lock["relation"], lock["mode"])] = {"seconds": round(total, 3), "seen_by": "self"}
    for key, seconds in sampled.items():
        entry = locks.setdefault(key, {"seconds": seconds, "seen_by": "sampler"})
        entry["seconds"] = max(entry["seconds"], seconds)
    after = files(conn, q, table_oids)
    rewrote = sorted(back(name) for name, (node, kind) in before.items()
                     if name in after and after[name][0] != node and kind in ("r", "m"))
    rebuilt = sorted(back(name) for name, (node, kind) in before.items()
                     if kind == "i" and name in after and after[name][0] != node)
    out = [{"relation": back(rel), "mode": mode, "blocks": blocks(mode), **facts}
           for (rel, mode), facts in sorted(locks.items())]
    top = strongest(lock["mode"] for lock in out)
    return {"seconds": round(ran, 3), "locks": out, "strongest": top, "blocks": blocks(top),
            "held_seconds": max((lock["seconds"] for lock in out if lock["mode"] == top), default=0.0),
            "rewrote": rewrote, "rebuilt_indexes": rebuilt, "samples": sampler.samples}

