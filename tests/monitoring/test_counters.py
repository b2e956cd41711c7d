"""The counter pass: every ending counted once, in its minute, cheaply."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import psycopg
import pytest

from pgsteady.monitoring.counters import CounterPass
from pgsteady.monitoring.counts import SECONDS, Counts, quantile
from pgsteady.queries import for_schema

from .conftest import Q


def totals(conn) -> dict[tuple[str, str], dict]:
    cur = conn.cursor(row_factory=psycopg.rows.dict_row)
    return {(r["queue"], r["task"]): r for r in cur.execute(Q.job_totals).fetchall()}


def test_each_ending_is_counted_once_under_its_outcome(history):
    at = history.ago(minutes=30)
    history.succeeded("send", 40, at=at, queue="mail", run=0.2, wait=0.03)
    history.ended("send", 7, "retry_scheduled", at=at, queue="mail")
    history.ended("send", 3, "failed", at=at, queue="mail")
    history.ended("send", 2, "failed", at=at, queue="mail", discard=True)
    history.ended("send", 4, "rescued", at=at, queue="mail")
    history.ended("send", 5, "late_write_rejected", at=at, queue="mail")
    history.ended("send", 1, "cancelled", at=at, queue="mail")
    history.ended("send", 9, "log", at=at, queue="mail")  # ctx.log() lines are not endings
    assert history.count() == 40 + 7 + 3 + 2 + 4 + 5 + 1
    row = totals(history.conn)[("mail", "send")]
    assert {k: row[k] for k in ("succeeded", "retried", "failed", "discarded", "rescued", "rejected", "cancelled")} == \
        dict(succeeded=40, retried=7, failed=3, discarded=2, rescued=4, rejected=5, cancelled=1)
    c = Counts.from_row(row)
    assert c.failures == 12 and c.attempts == 52
    assert c.run[SECONDS.index(0.25)] == 40 and c.run[SECONDS.index(0.1)] == 0
    assert c.wait[SECONDS.index(0.05)] == 40 and c.wait[SECONDS.index(0.025)] == 0
    assert c.run_sum == pytest.approx(40 * 0.2)
    minutes = history.conn.execute(
        "SELECT minute, release, sum(succeeded) FROM pgsteady.job_stats GROUP BY 1, 2").fetchall()
    assert minutes == [(at.replace(second=0, microsecond=0), "r1", 40)]


def test_a_second_pass_adds_only_what_is_new(history):
    history.succeeded("t", 10, at=history.ago(minutes=5))
    assert history.count() == 10
    assert history.count() == 0
    history.succeeded("t", 5, at=history.clock())
    assert history.count() == 5
    assert totals(history.conn)[("default", "t")]["succeeded"] == 15


def test_recent_rows_wait_for_the_next_pass_until_they_settle(history):
    history.succeeded("t", 3, at=history.clock())
    assert history.count(settle=timedelta(minutes=1)) == 0
    assert history.count() == 3


def test_passes_on_several_connections_count_each_attempt_once(history):
    history.succeeded("t", 500, at=history.ago(hours=3), spread=timedelta(hours=3))
    history.ended("t", 50, "retry_scheduled", at=history.ago(hours=3), spread=timedelta(hours=3))

    async def race() -> None:
        conns = [await psycopg.AsyncConnection.connect(history.dsn, autocommit=True) for _ in range(4)]
        try:
            passes = [CounterPass(Q, settle=timedelta(0), max_span=timedelta(minutes=7), backfill=timedelta(hours=4))
                      for _ in conns]
            for _ in range(200):
                await asyncio.gather(*(p.run_once(c) for p, c in zip(passes, conns)))
                if not any(p.behind for p in passes):
                    break
        finally:
            for c in conns:
                await c.close()

    asyncio.run(race())
    row = totals(history.conn)[("default", "t")]
    assert (row["succeeded"], row["retried"]) == (500, 50)
    assert history.conn.execute("SELECT sum(succeeded) FROM pgsteady.job_stats").fetchone()[0] == 500


def test_first_pass_backfills_and_catches_up_in_bounded_steps(history):
    history.succeeded("t", 10, at=history.ago(hours=5))
    history.succeeded("t", 10, at=history.ago(hours=30))  # older than the backfill: not counted

    async def steps() -> list[bool]:
        counter = CounterPass(Q, settle=timedelta(0), max_span=timedelta(hours=2), backfill=timedelta(hours=24))
        seen = []
        async with await psycopg.AsyncConnection.connect(history.dsn, autocommit=True) as conn:
            for _ in range(20):
                await counter.run_once(conn)
                seen.append(counter.behind)
                if not counter.behind:
                    break
        return seen

    seen = asyncio.run(steps())
    # 24 hours in steps of 2: eleven or twelve passes behind (now moves on meanwhile), then current.
    assert seen[-1] is False and all(seen[:-1]) and 12 <= len(seen) <= 13, seen
    assert totals(history.conn)[("default", "t")]["succeeded"] == 10


def test_old_minutes_are_pruned_but_totals_stay(history):
    history.succeeded("t", 10, at=history.ago(hours=20))
    history.count()
    history.conn.execute("UPDATE pgsteady.job_stats SET minute = minute - interval '9 days'")
    history.count()
    assert history.conn.execute("SELECT count(*) FROM pgsteady.job_stats").fetchone()[0] == 0
    assert totals(history.conn)[("default", "t")]["succeeded"] == 10


def test_error_groups_keep_task_message_and_the_latest_job(history):
    at = history.ago(minutes=3)
    history.ended("send", 4, "retry_scheduled", at=at, message="SMTPError: 550 mailbox unavailable")
    history.ended("send", 1, "failed", at=at, message="SMTPError: 550 mailbox unavailable\nmore lines")
    history.ended("render", 2, "retry_scheduled", at=at, message="x" * 500)
    history.ended("render", 2, "rescued", at=at, message="lease of worker w expired")
    history.count()
    rows = history.conn.execute(
        "SELECT task, message, sum(failures), max(last_job_id) FROM pgsteady.error_stats GROUP BY 1, 2 ORDER BY 1"
    ).fetchall()
    newest_send = history.conn.execute("SELECT max(id) FROM pgsteady.jobs WHERE task = 'send'").fetchone()[0]
    assert rows == [("render", "x" * 200, 2, rows[0][3]), ("send", "SMTPError: 550 mailbox unavailable", 5, newest_send)]


def test_histogram_bounds_are_listed_once_and_stored_as_arrays_of_that_length(history):
    from importlib import resources

    text = (resources.files("pgsteady") / "sql" / "monitoring.sql").read_text()
    schema = (resources.files("pgsteady") / "sql" / "schema.sql").read_text()
    assert not re.search(r"\b(run|wait)_le_\w+", text)  # no bucket column in the queries
    assert "0.005" not in text and "14400" not in text  # the bounds come from Python
    # The one fragment that sums the arrays has one sum per bound, for each histogram.
    fragment = text[text.index("-- name: _histogram_sums"):text.index("-- name: counter_lock")]
    for kind in ("run", "wait"):
        assert re.findall(rf"sum\({kind}_le\[(\d+)\]\)", fragment) == [str(i) for i in range(1, len(SECONDS) + 1)]
    # The fresh schema still creates the 003 columns, then 006 turns them into arrays.
    assert "ADD COLUMN run_le bigint[]" in schema
    history.succeeded("t", 4, at=history.ago(minutes=5), run=0.3, wait=2)
    history.count()
    for table in ("job_stats", "job_stats_hourly", "job_totals"):
        run_le, wait_le = history.conn.execute(f"SELECT run_le, wait_le FROM pgsteady.{table}").fetchone()
        assert len(run_le) == len(wait_le) == len(SECONDS)
        assert run_le == [4 if bound >= 0.3 else 0 for bound in SECONDS]
        assert wait_le == [4 if bound >= 2 else 0 for bound in SECONDS]


def test_the_first_minute_of_a_new_install_counts_at_once(history, dsn):
    """A fresh install starts counting where its history starts: the first pass
    is current, counts the failures already there, and status is not behind."""
    from pgsteady.monitoring.status import check

    history.healthy_fleet()
    history.succeeded("t", 20, at=history.ago(seconds=40), spread=timedelta(seconds=30))
    history.ended("t", 30, "retry_scheduled", at=history.ago(seconds=40), spread=timedelta(seconds=30))

    async def first_pass() -> CounterPass:
        counter = CounterPass(Q, settle=timedelta(0))
        async with await psycopg.AsyncConnection.connect(history.dsn, autocommit=True) as conn:
            await counter.run_once(conn)
        return counter

    counter = asyncio.run(first_pass())
    assert counter.behind is False and counter.interval == 10.0
    s = check(dsn)
    assert s.sections["failing"]["last_15m"]["failures"] == 30
    assert s.sections["failing"]["last_15m"]["succeeded"] == 20
    assert not any("behind" in r for r in s.reasons), s.reasons
    assert s.sections["counters"]["lag_seconds"] < 60


def test_an_empty_install_starts_counting_from_now(history):
    async def first_pass() -> tuple[bool, float]:
        counter = CounterPass(Q, settle=timedelta(seconds=5))
        async with await psycopg.AsyncConnection.connect(history.dsn, autocommit=True) as conn:
            await counter.run_once(conn)
        return counter.behind, counter.interval

    assert asyncio.run(first_pass()) == (False, 10.0)
    lag = history.conn.execute(
        "SELECT extract(epoch FROM now() - counted_until) FROM pgsteady.counter_progress").fetchone()[0]
    assert 0 <= lag < 60


def test_while_behind_the_next_pass_is_due_at_once(history):
    history.succeeded("t", 10, at=history.ago(hours=5))

    async def one() -> tuple[bool, float]:
        counter = CounterPass(Q, settle=timedelta(0), max_span=timedelta(hours=1))
        async with await psycopg.AsyncConnection.connect(history.dsn, autocommit=True) as conn:
            await counter.run_once(conn)
        return counter.behind, counter.interval

    assert asyncio.run(one()) == (True, 0.0)


def test_quantiles_interpolate_inside_the_bucket():
    cum = [0] * len(SECONDS)
    one_s = SECONDS.index(1.0)
    for i in range(one_s, len(SECONDS)):
        cum[i] = 100  # 100 values in (0.5, 1]
    assert quantile(0.5, cum, 100) == pytest.approx(0.75)
    assert quantile(0.95, cum, 100) == pytest.approx(0.975)
    assert quantile(0.5, [0] * len(SECONDS), 10) == SECONDS[-1]  # all past the last bound
    assert quantile(0.5, cum, 0) is None


def _index_scans(node) -> set[str]:
    if isinstance(node, dict):
        return ({node["Index Name"]} if "Index Name" in node else set()).union(*map(_index_scans, node.values()))
    if isinstance(node, list):
        return set().union(*map(_index_scans, node))
    return set()


def _seq_scans(node) -> set[str]:
    if isinstance(node, dict):
        own = {node["Relation Name"]} if node.get("Node Type") == "Seq Scan" else set()
        return own.union(*map(_seq_scans, node.values()))
    if isinstance(node, list):
        return set().union(*map(_seq_scans, node))
    return set()


def test_the_pass_and_the_depths_read_through_their_indexes(history):
    # Old history the pass must not touch: it reaches its window through the indexes.
    history.succeeded("t", 50_000, at=history.ago(days=2), spread=timedelta(hours=23))
    history.ended("t", 5_000, "retry_scheduled", at=history.ago(hours=23), spread=timedelta(hours=22))
    history.waiting(5_000, due=history.ago(minutes=1), queue="q1")
    history.conn.execute("ANALYZE pgsteady.jobs")
    history.conn.execute("ANALYZE pgsteady.events")
    q = for_schema("pgsteady")
    lo, hi = history.ago(seconds=20), history.ago(seconds=10)
    plan = history.conn.execute("EXPLAIN (FORMAT JSON) " + q.count_attempts, dict(lo=lo, hi=hi, bounds=list(SECONDS))).fetchone()[0]
    scans = _index_scans(plan)
    # The event partitions that hold the old history are reached through their
    # own created_at index or pruned, never read whole. (The window's own day
    # may be a partition with nothing in it yet, just after midnight, which
    # the planner rightly reads by a seq scan: it is not history.)
    old = {name.rsplit(".", 1)[-1] for (name,) in history.conn.execute(
        "SELECT DISTINCT tableoid::regclass::text FROM pgsteady.events WHERE created_at < %s",
        [lo - timedelta(minutes=5)])}
    assert old and "jobs_finished_idx" in scans, scans
    assert not (_seq_scans(plan) & (old | {"jobs"})), (_seq_scans(plan), old)
    assert all(re.fullmatch(r"events_\d{8}_created_at_idx", s) for s in scans - {"jobs_finished_idx", "jobs_pkey"}), scans
    plan = history.conn.execute("EXPLAIN (FORMAT JSON) " + q.queue_depths, dict(queue=None)).fetchone()[0]
    assert "jobs_waiting_queue_idx" in _index_scans(plan), plan


def test_counters_match_what_a_real_worker_did(app, dsn, history):
    from pgsteady import Discard, Retry, run_worker

    @app.task(name="ok", queue="mail")
    async def ok(n: int) -> None: ...

    @app.task(name="tx", transactional=True)
    def tx(ctx, n: int) -> None:
        ctx.conn.execute("SELECT 1")

    @app.task(name="flaky", max_attempts=3, retry=Retry(base=0, cap=0, jitter=0))
    def flaky(n: int) -> None:
        raise RuntimeError(f"flaky {n % 2}")

    @app.task(name="refuse")
    def refuse(n: int) -> None:
        raise Discard("not for us")

    app.enqueue_many([("ok", {"n": i}) for i in range(30)] + [("tx", {"n": i}) for i in range(20)]
                     + [("flaky", {"n": i}) for i in range(4)] + [("refuse", {"n": i}) for i in range(3)])
    run_worker(app, until_idle=True, handle_signals=False, poll_interval=0.05)
    history.count()
    got = {key: {k: row[k] for k in ("succeeded", "retried", "failed", "discarded")}
           for key, row in totals(history.conn).items()}
    assert got == {
        ("mail", "ok"): dict(succeeded=30, retried=0, failed=0, discarded=0),
        ("default", "tx"): dict(succeeded=20, retried=0, failed=0, discarded=0),
        ("default", "flaky"): dict(succeeded=0, retried=8, failed=4, discarded=0),
        ("default", "refuse"): dict(succeeded=0, retried=0, failed=0, discarded=3),
    }
    errors = history.conn.execute(
        "SELECT message, sum(failures) FROM pgsteady.error_stats WHERE task = 'flaky' GROUP BY 1 ORDER BY 1").fetchall()
    assert errors == [("RuntimeError: flaky 0", 6), ("RuntimeError: flaky 1", 6)]
    release = history.conn.execute("SELECT DISTINCT release FROM pgsteady.job_stats").fetchall()
    assert release == [("test-release",)]


def test_the_all_tasks_minutes_equal_the_sum_of_the_per_task_minutes(history):
    history.succeeded("a", 30, at=history.ago(minutes=50), spread=timedelta(minutes=40), run=0.3)
    history.succeeded("b", 20, queue="mail", at=history.ago(minutes=30), spread=timedelta(minutes=20), run=7)
    history.ended("a", 5, "retry_scheduled", at=history.ago(minutes=20), spread=timedelta(minutes=10))
    history.count()
    per_task = history.conn.execute("""
        SELECT minute, sum(succeeded), sum(retried), pgsteady.sum_counts(run_le)
        FROM pgsteady.job_stats GROUP BY minute ORDER BY minute""").fetchall()
    everything = history.conn.execute(
        "SELECT minute, succeeded, retried, run_le FROM pgsteady.job_stats_all ORDER BY minute").fetchall()
    assert [tuple(r) for r in per_task] == [tuple(r) for r in everything] and len(everything) > 10
