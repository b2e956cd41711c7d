"""An index on a partitioned table as one change and one durable job, under write load,
killed in the middle and resumed, then rolled back."""

from __future__ import annotations

import json
import signal
import threading

import psycopg

from ..helpers import scalar, stop, wait_until
from .conftest import pgsteady, write_change

PARTITIONS = ["m_1", "m_2", "m_3", "m_4"]


def _plant(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE m (id bigint GENERATED ALWAYS AS IDENTITY, part int NOT NULL, device int NOT NULL) "
                     "PARTITION BY LIST (part)")
        for n, name in enumerate(PARTITIONS, 1):
            conn.execute(f"CREATE TABLE {name} PARTITION OF m FOR VALUES IN ({n})")
        conn.execute("INSERT INTO m (part, device) SELECT 1 + g % 4, g % 1000 FROM generate_series(1, 200000) g")
        conn.execute("VACUUM ANALYZE m")


def _attached(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn) as conn:
        return dict(conn.execute(
            "SELECT t.relname, i.inhrelid::int FROM pg_inherits i JOIN pg_index x ON x.indexrelid = i.inhrelid "
            "JOIN pg_class t ON t.oid = x.indrelid WHERE i.inhparent = to_regclass('m_device_idx')").fetchall())


def test_partitioned_route_under_writes_survives_a_kill_at_a_partition_and_rolls_back(dsn, tmp_path, worker):
    _plant(dsn)
    path = write_change(tmp_path, "m-device", "CREATE INDEX CONCURRENTLY m_device_idx ON m (device)",
                        extra='[rehearse]\nskip = true\n[build]\nlock_timeout = "60s"\n')
    lint = pgsteady("change", "lint", str(path), dsn=dsn)
    assert lint.returncode == 0 and "partitioned-route" in lint.stdout, lint.stdout + lint.stderr

    # Write load on every partition for the whole test.
    written, errors, done = [0], [], threading.Event()

    def writer() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                n = 0
                while not done.is_set():
                    conn.execute("INSERT INTO m (part, device) VALUES (%s, %s)", [1 + n % 4, n % 1000])
                    n += 1
                    written[0] = n
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    load = threading.Thread(target=writer, daemon=True)
    load.start()
    # An open transaction that wrote to m_3 holds the build there ("waiting for writers"),
    # after m_1 and m_2 are built and attached: the worker is killed at that partition.
    holder = psycopg.connect(dsn)
    holder.execute("INSERT INTO m_3 (part, device) VALUES (3, 7)")  # locks m_3 only, not the parent
    try:
        first = worker()
        r = pgsteady("change", "apply", str(path), "--json", dsn=dsn)
        assert r.returncode == 0, r.stderr
        job_id = json.loads(r.stdout)["job_id"]
        at_m3 = ("SELECT phase FROM pg_stat_progress_create_index WHERE relid = to_regclass('m_3')")
        wait_until(lambda: (scalar(dsn, at_m3) or "").startswith("waiting for writers"), timeout=60,
                   what="the build waiting at m_3")
        before_kill = _attached(dsn)
        assert set(before_kill) == {"m_1", "m_2"}, before_kill
        progress = scalar(dsn, "SELECT details -> 'partitions' FROM pgsteady.change_steps WHERE job_id = %s", [job_id])
        assert progress["done"] == 2 and progress["total"] == 4 and progress["current"] == "public.m_3", progress
        assert not scalar(dsn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'm_device_idx'::regclass")
        stop(first, signal.SIGKILL)
        wait_until(lambda: scalar(dsn, at_m3) is None, timeout=15, what="the orphaned build to end")
    finally:
        holder.commit()
        holder.close()
    writes_before_resume = written[0]
    worker()
    wait_until(lambda: scalar(dsn, "SELECT state::text FROM pgsteady.jobs WHERE id = %s", [job_id]) == "succeeded",
               timeout=90, what="the resumed route to finish")
    done.set()
    load.join(10)
    assert not errors, errors
    assert written[0] > writes_before_resume > 0  # writes went on during the build and the resume
    after = _attached(dsn)
    assert set(after) == set(PARTITIONS)
    # The partitions finished before the kill were not built again.
    assert {k: after[k] for k in before_kill} == before_kill
    assert scalar(dsn, "SELECT indisvalid FROM pg_index WHERE indexrelid = 'm_device_idx'::regclass")
    assert scalar(dsn, "SELECT count(*) FROM pg_index WHERE NOT indisvalid") == 0
    assert scalar(dsn, "SELECT attempt FROM pgsteady.jobs WHERE id = %s", [job_id]) == 2
    assert scalar(dsn, "SELECT status FROM pgsteady.changes WHERE id = 'm-device'") == "applied"
    assert scalar(dsn, "SELECT count(*) FROM m") == 200000 + 1 + written[0]

    back = pgsteady("change", "rollback", str(path), "--wait", "--timeout", "60", dsn=dsn)
    assert back.returncode == 0, back.stdout + back.stderr
    assert scalar(dsn, "SELECT to_regclass('m_device_idx')") is None
    assert scalar(dsn, "SELECT count(*) FROM pg_indexes WHERE tablename LIKE 'm\\_%%'") == 0
    assert scalar(dsn, "SELECT status FROM pgsteady.changes WHERE id = 'm-device'") == "rolled back"
    note = (tmp_path / "m-device.md").read_text()
    assert "built public.m_device_idx on 4 partition(s) and attached each" in note
    assert "status**: rolled back" in note


def test_the_progress_line_names_the_partition_being_built():
    from pgsteady.changes.progress import Snapshot

    snap = Snapshot("running", 1, phase="building index: scanning table",
                    partitions={"done": 2, "total": 4, "current": "public.m_3"})
    assert snap.describe == "partition 3/4 (public.m_3): building index: scanning table"
