"""A build that is still running is never called a dead leftover."""

from __future__ import annotations

import threading

import psycopg
import pytest

from pgsteady.indexes import check

from .conftest import wait_for


@pytest.fixture
def build_in_progress(empty_dsn):
    """CREATE INDEX CONCURRENTLY in another connection, held in its first wait by a writer."""
    with psycopg.connect(empty_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE busy (id int); CREATE TABLE other (id int)")
    blocker = psycopg.connect(empty_dsn)
    blocker.execute("INSERT INTO busy VALUES (1)")  # an open writer: the build waits for it
    builder = psycopg.connect(empty_dsn, autocommit=True)
    errors: list[BaseException] = []

    def build():
        try:
            builder.execute("CREATE INDEX CONCURRENTLY busy_id_idx ON busy (id)")
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    thread = threading.Thread(target=build)
    thread.start()
    with psycopg.connect(empty_dsn, autocommit=True) as watcher:
        wait_for(lambda: watcher.execute(
            "SELECT index_relid FROM pg_stat_progress_create_index"
            " WHERE datname = current_database() AND index_relid <> 0").fetchone(),
            what="the build to show in pg_stat_progress_create_index")
    try:
        yield empty_dsn
    finally:
        blocker.rollback()
        thread.join(timeout=30)
        blocker.close()
        builder.close()
    assert not errors, errors


def test_build_in_progress_is_info_not_dead(build_in_progress):
    report = check(build_in_progress)
    [finding] = report.findings
    assert finding.check == "invalid_index"
    assert finding.severity == "info"
    assert finding.objects == ["public.busy_id_idx"]
    assert finding.evidence["state"] == "building"
    assert finding.evidence["command"] == "CREATE INDEX CONCURRENTLY"
    assert finding.evidence["details_hidden"] is False
    assert finding.fix_statements == []
    assert not report.reaches("warn")


def test_build_in_progress_seen_by_an_ordinary_role_is_still_not_dead(build_in_progress, role_dsn):
    # Without pg_read_all_stats the progress row hides relid and index_relid;
    # the lock the build holds on its table still gives it away.
    report = check(role_dsn(build_in_progress))
    assert report.role.startswith("ix_role_")
    [finding] = report.findings
    assert finding.evidence["state"] == "building"
    assert finding.evidence["details_hidden"] is True
    assert finding.severity == "info"


def test_invalid_index_on_another_table_than_the_build_is_dead(build_in_progress):
    from .conftest import failed_builds

    failed_builds(build_in_progress, "other", ["CREATE INDEX CONCURRENTLY other_id_idx ON other (id)"])
    states = {f.objects[0]: (f.severity, f.evidence["state"]) for f in check(build_in_progress).findings}
    assert states == {"public.busy_id_idx": ("info", "building"), "public.other_id_idx": ("error", "dead")}


def test_one_probe_of_builds_serves_the_checks_the_wait_and_the_dashboard(build_in_progress):
    """index_builds is the one read of pg_stat_progress_create_index: the
    checks' snapshot, `change apply --wait` (one pid) and the dashboard all
    see the same build, with who it waits for."""
    from pgsteady.dashboard import reads
    from pgsteady.indexes import catalog, probes
    from pgsteady.indexes.report import Thresholds

    with psycopg.connect(build_in_progress, autocommit=True) as conn:
        [build] = probes.index_builds(conn)
        assert (build["table_name"], build["index_name"]) == ("busy", "busy_id_idx")
        assert build["command"] == "CREATE INDEX CONCURRENTLY" and build["phase"].startswith("waiting")
        assert build["table_oid"] in build["locked"]
        one = probes.index_build(conn, build["pid"])
        assert one is not None and (one["pid"], one["index_oid"]) == (build["pid"], build["index_oid"])
        assert probes.index_build(conn, conn.info.backend_pid) is None  # this backend builds nothing
        assert [b["pid"] for b in reads.index_builds(conn)] == [build["pid"]]
        snap = catalog.load(conn, schema=None, table_oid=None, thresholds=Thresholds())
        assert [b["index_oid"] for b in snap.builds] == [build["index_oid"]]
        [blocker] = probes.blockers(conn, build["pid"])  # the open writer the build waits for
        assert blocker["query"].startswith("INSERT INTO busy")
        assert probes.backend(conn, build["pid"])["wait_event_type"] == "Lock"
        [live] = probes.backends(conn, [build["pid"], 2_000_000_000])  # a pid that is not alive
        assert live["pid"] == build["pid"] and live["backend_start"] is not None
