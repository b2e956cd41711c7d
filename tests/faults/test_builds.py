"""Index builds through PgBouncer in transaction pool mode: CREATE INDEX
CONCURRENTLY runs outside any transaction, one build per table holds the
table's lease row (changes/slots.py), and a killed builder's slot is taken
over once its lease has passed, never stranded by a pooled server session."""

from __future__ import annotations

import json
import signal

import psycopg

from ..changes.conftest import make_events, pgsteady, write_change
from ..changes.test_build import _history, _invalid_indexes
from ..helpers import scalar, stop, wait_until
from . import fleet

LEASE = 2.0  # the workers' job lease
SLOT_LEASE = 3.0
BUILD = '[rehearse]\nskip = true\n[build]\nslot_lease = "3s"\n'
BUILDING = "SELECT count(*) FROM pg_stat_progress_create_index WHERE relid = to_regclass('events')"
SLOT = ("SELECT job_id, fencing_token FROM pgsteady.build_slots "
        "WHERE table_oid = to_regclass('events') AND expires_at > now()")


def _state(dsn: str, job_id: int) -> str:
    return scalar(dsn, "SELECT state::text FROM pgsteady.jobs WHERE id = %s", [job_id])


def test_builds_through_a_transaction_pooler_are_one_per_table_and_a_killed_builders_slot_is_taken_over(
        fault_server, fault_db, tx_bouncer, tmp_path):
    dsn, through = fault_server.dsn(fault_db), tx_bouncer.dsn(fault_db)
    make_events(dsn, 20_000)
    account = write_change(tmp_path, "account", "CREATE INDEX CONCURRENTLY events_account_idx ON events (account)",
                           extra=BUILD)
    kind = write_change(tmp_path, "kind", "CREATE INDEX CONCURRENTLY events_kind_idx ON events (kind)", extra=BUILD)
    # An open writing transaction holds the first build in "waiting for writers", its INVALID index
    # already in the catalogue: a build in the middle of its work.
    writer = psycopg.connect(dsn)
    writer.execute("INSERT INTO events (created_at, kind, account) VALUES (now(), 'late', 1)")
    workers = [fleet.start(through, "--queues", "maintenance", "--concurrency", "1", "--poll", "0.2", lease=LEASE)
               for _ in range(2)]
    try:
        jobs = []
        for path in (account, kind):
            r = pgsteady("change", "apply", str(path), "--json", dsn=through)
            assert r.returncode == 0, r.stderr
            jobs.append(json.loads(r.stdout)["job_id"])
        holder, token = wait_until(lambda: scalar(dsn, BUILDING) == 1 and _slot(dsn), timeout=60,
                                   what="one build running through the pooler")
        [other] = [j for j in jobs if j != holder]
        wait_until(lambda: any("holds this table's build slot" in m for m in _history(dsn, other)), timeout=60,
                   what="the second build refused the table's slot")
        assert scalar(dsn, BUILDING) == 1 and _state(dsn, other) == "running"
        assert any("through a transaction pooler" in m for m in _history(dsn, holder))

        # Kill the builder: its slot is not released, and no pooled session keeps it.
        pid = scalar(dsn, "SELECT w.pid FROM pgsteady.jobs j JOIN pgsteady.workers w ON w.id = j.worker_id "
                          "WHERE j.id = %s", [holder])
        [killed] = [w for w in workers if w.pid == pid]
        stop(killed, signal.SIGKILL)
        taken = wait_until(lambda: (_slot(dsn) or (None, None))[0] == other and _slot(dsn), timeout=30,
                           what=f"the waiting build taking the slot over after its lease of {SLOT_LEASE:g}s")
        assert taken[1] == token + 1  # fenced: the dead builder's token renews nothing now
        writer.commit()
        for job in jobs:  # the killed builder's job is rescued and finishes on the survivor
            wait_until(lambda: _state(dsn, job) == "succeeded", timeout=120, what=f"job {job} succeeded")
    finally:
        writer.close()
        logs = [stop(w, signal.SIGTERM) for w in workers if w.poll() is None]
    for name in ("events_account_idx", "events_kind_idx"):
        assert scalar(dsn, "SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass(%s)", [name])
    assert _invalid_indexes(dsn) == 0
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.build_slots WHERE expires_at > now()") == 0
    assert not any("Traceback" in log for log in logs), logs


def _slot(dsn: str):
    with psycopg.connect(dsn, autocommit=True) as conn:
        return conn.execute(SLOT).fetchone()
