"""The worker in-process: running, retrying, failing, fencing, cancelling."""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from datetime import timedelta

import psycopg
import pytest

from pgsteady import App, Discard, Retry, Worker, run_worker
from pgsteady.queries import for_schema

from .helpers import scalar, states, wait_until

FAST = Retry(base=0, jitter=0)


def drain(app: App, **kw) -> object:
    kw.setdefault("concurrency", 4)
    kw.setdefault("lease", 5)
    kw.setdefault("poll_interval", 0.1)
    return run_worker(app, until_idle=True, handle_signals=False, **kw)


def start_in_thread(worker: Worker) -> threading.Thread:
    t = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    t.start()
    return t


def job(dsn: str, job_id: int) -> dict:
    with psycopg.connect(dsn) as conn:
        cur = conn.execute("SELECT * FROM pgsteady.jobs WHERE id = %s", [job_id])
        return dict(zip([c.name for c in cur.description], cur.fetchone()))


def events(dsn: str, job_id: int) -> list[tuple]:
    with psycopg.connect(dsn) as conn:
        return conn.execute("SELECT kind, message, attempt, data FROM pgsteady.events WHERE job_id = %s ORDER BY id",
                            [job_id]).fetchall()


def test_sync_and_async_tasks_run_with_their_context(app, dsn):
    seen = {}

    @app.task(name="plain")
    def plain(x: int) -> None:
        seen["plain"] = x

    @app.task(name="with_ctx")
    async def with_ctx(ctx, x: int) -> None:
        await asyncio.sleep(0)
        seen["ctx"] = (ctx.id, ctx.attempt, ctx.key, ctx.args, ctx.conn)

    a = app.enqueue("plain", {"x": 1})
    b = app.enqueue("with_ctx", {"x": 2}, key="k2")
    stats = drain(app)
    assert stats.succeeded == 2
    assert seen == {"plain": 1, "ctx": (b.id, 1, "k2", {"x": 2}, None)}
    for ref in (a, b):
        row = job(dsn, ref.id)
        assert (row["state"], row["release"], row["lease_token"]) == ("succeeded", "test-release", None)
    assert events(dsn, a.id) == []  # the success path writes no history


def test_failures_are_retried_then_kept_with_every_error_and_traceback(app, dsn):
    @app.task(name="flaky", max_attempts=3, retry=FAST)
    def flaky(n: int) -> None:
        raise ValueError(f"bad input {n}")

    ref = app.enqueue("flaky", {"n": 5})
    stats = drain(app)
    assert (stats.retried, stats.failed) == (2, 1)
    row = job(dsn, ref.id)
    assert (row["state"], row["attempt"]) == ("failed", 3)
    assert [e["attempt"] for e in row["errors"]] == [1, 2, 3]
    assert all(e["error"] == "ValueError: bad input 5" for e in row["errors"])
    assert all('raise ValueError(f"bad input {n}")' in e["traceback"] for e in row["errors"])
    assert [k for k, *_ in events(dsn, ref.id)] == ["retry_scheduled", "retry_scheduled", "failed"]


def test_backoff_schedules_the_retry_in_the_future(app, dsn):
    @app.task(name="slow_retry", retry=Retry(base=600, jitter=0))
    def slow_retry() -> None:
        raise RuntimeError("later")

    ref = app.enqueue("slow_retry", {})
    drain(app)
    row = job(dsn, ref.id)
    assert row["state"] == "waiting" and row["attempt"] == 1
    wait_s = scalar(dsn, "SELECT extract(epoch FROM run_at - now()) FROM pgsteady.jobs WHERE id = %s", [ref.id])
    assert 590 < wait_s <= 600


def test_retry_policy_grows_exponentially_with_jitter_and_cap():
    r = Retry(base=2, cap=60, jitter=0.5)
    for attempt, full in [(1, 2), (2, 4), (3, 8), (10, 60)]:
        samples = [r.backoff(attempt) for _ in range(200)]
        assert full * 0.5 <= min(samples) and max(samples) <= full
        assert max(samples) - min(samples) > 0  # jittered


def test_discard_fails_at_once(app, dsn):
    @app.task(name="hopeless", max_attempts=10)
    def hopeless() -> None:
        raise Discard("the post was deleted upstream")

    ref = app.enqueue("hopeless", {})
    drain(app)
    row = job(dsn, ref.id)
    assert (row["state"], row["attempt"]) == ("failed", 1)


def test_timeout_fails_the_attempt(app, dsn):
    @app.task(name="sleepy", timeout=0.2, max_attempts=1)
    async def sleepy() -> None:
        await asyncio.sleep(30)

    @app.task(name="raises_timeouterror", max_attempts=1)
    def raises_timeouterror() -> None:
        raise TimeoutError("socket timed out")

    a = app.enqueue("sleepy", {})
    b = app.enqueue("raises_timeouterror", {})
    drain(app)
    assert job(dsn, a.id)["errors"][0]["error"] == "timed out after 0.2s"
    assert job(dsn, b.id)["errors"][0]["error"] == "TimeoutError: socket timed out"


def test_transactional_task_writes_roll_back_when_it_fails(app, dsn):
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (job_id bigint, attempt int)")

    @app.task(name="post", transactional=True, retry=FAST)
    def post(ctx, fail_first: bool) -> None:
        ctx.conn.execute("INSERT INTO ledger VALUES (%s, %s)", [ctx.id, ctx.attempt])
        if fail_first and ctx.attempt == 1:
            raise RuntimeError("after writing")

    @app.task(name="apost", transactional=True, retry=FAST)
    async def apost(ctx, fail_first: bool) -> None:
        await ctx.conn.execute("INSERT INTO ledger VALUES (%s, %s)", [ctx.id, ctx.attempt])
        if fail_first and ctx.attempt == 1:
            raise RuntimeError("after writing")

    refs = [app.enqueue(name, {"fail_first": True}) for name in ("post", "apost")]
    drain(app)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT job_id, attempt FROM ledger ORDER BY job_id").fetchall()
    assert rows == [(refs[0].id, 2), (refs[1].id, 2)]


def test_ctx_log_adds_to_the_history(app, dsn):
    @app.task(name="chatty")
    def chatty(ctx) -> None:
        ctx.log("fetched feed", items=3)

    @app.task(name="achatty")
    async def achatty(ctx) -> None:
        await ctx.alog("async line")

    a, b = app.enqueue("chatty", {}), app.enqueue("achatty", {})
    drain(app)
    assert events(dsn, a.id) == [("log", "fetched feed", 1, {"items": 3})]
    assert events(dsn, b.id) == [("log", "async line", 1, None)]


def test_priority_then_run_at_then_id_order(app, dsn):
    order = []

    @app.task(name="rec")
    def rec(n: int) -> None:
        order.append(n)

    app.enqueue("rec", {"n": 1}, priority=5)
    app.enqueue("rec", {"n": 2}, priority=0)
    app.enqueue("rec", {"n": 3}, priority=0, run_at=timedelta(seconds=-60))
    app.enqueue("rec", {"n": 4}, priority=-1)
    drain(app, concurrency=1)
    assert order == [4, 3, 2, 1]


def test_worker_takes_only_its_queues(app, dsn):
    @app.task(name="a", queue="a")
    def a() -> None: ...

    @app.task(name="b", queue="b")
    def b() -> None: ...

    ra, rb = app.enqueue("a", {}), app.enqueue("b", {})
    drain(app, queues=["a"])
    assert job(dsn, ra.id)["state"] == "succeeded"
    assert job(dsn, rb.id)["state"] == "waiting"


def test_job_of_a_task_this_worker_does_not_know_is_retried_not_lost(app, dsn):
    other = App(dsn=dsn)

    @other.task(name="only_elsewhere")
    def only_elsewhere() -> None: ...

    ref = other.enqueue("only_elsewhere", {})
    other.close()
    drain(app)
    row = job(dsn, ref.id)
    assert row["state"] == "waiting" and "unknown task 'only_elsewhere'" in row["errors"][0]["error"]


def test_fencing_rejects_every_write_of_a_stale_attempt(app, dsn):
    """Claim as worker A, let its lease expire, rescue, claim as worker B:
    A's completion, failure, heartbeat and checkpoint are all rejected and
    recorded; B's completion succeeds."""

    @app.task(name="t")
    def t() -> None: ...

    ref = app.enqueue("t", {})
    q = for_schema("pgsteady")
    common = dict(release="r", lease=timedelta(seconds=30), limit=10, queues=None, ids=[], tokens=[])

    def complete(worker_id, tokens):  # a completion-only round: no claim
        rows = conn.execute(q.complete_and_claim, dict(common, worker_id=worker_id, limit=0,
                                                       ids=[ref.id], tokens=tokens)).fetchall()
        assert len(rows) == 1  # only the row that lists accepted completions
        return rows[0][-1]

    with psycopg.connect(dsn, autocommit=True) as conn:
        (a, _) = conn.execute(q.complete_and_claim, dict(common, worker_id="A")).fetchall()
        token_a = a[7]
        conn.execute("UPDATE pgsteady.jobs SET lease_expires_at = now() - interval '1 second'")
        with conn.transaction():
            assert conn.execute(q.expired_leases, dict(limit=10)).fetchall() == [(ref.id, "t", 1)]
            assert conn.execute(q.rescue_expired, dict(ids=[ref.id], backoffs=[timedelta(0)], worker_id="R",
                                                       release="r")).fetchall() == [(ref.id,)]
        (b, _) = conn.execute(q.complete_and_claim, dict(common, worker_id="B")).fetchall()
        token_b = b[7]
        assert b[5] == 2 and token_b != token_a

        ids, stale = [ref.id], [token_a]
        assert complete("A", stale) == []
        assert conn.execute(q.fail_job, dict(id=ref.id, token=token_a, retry=True, backoff=timedelta(0), error="late",
                                              traceback="", worker_id="A", release="r")).fetchall() == []
        assert conn.execute(q.heartbeat, dict(ids=ids, tokens=stale, worker_id="A",
                                              lease=timedelta(seconds=30))).fetchall() == []
        assert conn.execute(q.save_checkpoint, dict(id=ref.id, token=token_a, value='{"n": 1}')).fetchall() == []
        assert job(dsn, ref.id)["state"] == "running" and job(dsn, ref.id)["worker_id"] == "B"

        assert complete("B", [token_b]) == [ref.id]
    kinds = [k for k, *_ in events(dsn, ref.id)]
    assert kinds == ["rescued", "late_write_rejected", "late_write_rejected"]
    assert job(dsn, ref.id)["state"] == "succeeded"


def test_stale_transactional_attempt_rolls_back_and_is_recorded(app, dsn):
    """A transactional task whose lease is taken over while it runs commits
    nothing: its ledger row disappears with the rejected completion."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (job_id bigint)")
    inside, release = threading.Event(), threading.Event()

    @app.task(name="slow_post", transactional=True)
    def slow_post(ctx) -> None:
        ctx.conn.execute("INSERT INTO ledger VALUES (%s)", [ctx.id])
        inside.set()
        release.wait(30)

    ref = app.enqueue("slow_post", {})
    worker = Worker(app, concurrency=1, lease=30, poll_interval=0.1)
    thread = start_in_thread(worker)
    assert inside.wait(30)
    # Another worker takes the job over (as after a rescue): a new token.
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.jobs SET lease_token = gen_random_uuid(), worker_id = 'other' WHERE id = %s", [ref.id])
    release.set()
    wait_until(lambda: any(k == "late_write_rejected" for k, *_ in events(dsn, ref.id)), what="rejection event")
    worker.stop()
    thread.join(30)
    assert scalar(dsn, "SELECT count(*) FROM ledger") == 0
    assert job(dsn, ref.id)["state"] == "running"  # still the other worker's attempt
    assert worker.stats.rejected == 1


def test_cancel_waiting_and_running_jobs(app, dsn):
    from pgsteady import jobs as admin

    started = threading.Event()

    @app.task(name="forever")
    async def forever(ctx) -> None:
        started.set()
        await asyncio.sleep(60)

    @app.task(name="polite")
    def polite(ctx) -> None:
        while True:
            ctx.raise_if_cancelled()
            time.sleep(0.01)

    @app.task(name="never")
    def never() -> None:
        raise AssertionError("a cancelled waiting job must not run")

    waiting = app.enqueue("never", {}, run_at=timedelta(hours=1))
    q = for_schema("pgsteady")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert admin.cancel(conn, q, waiting.id) == "cancelled"
    a, s = app.enqueue("forever", {}), app.enqueue("polite", {})
    worker = Worker(app, concurrency=4, lease=30, poll_interval=0.1)
    thread = start_in_thread(worker)
    assert started.wait(30)
    wait_until(lambda: job(dsn, s.id)["state"] == "running", what="polite job running")
    with psycopg.connect(dsn, autocommit=True) as conn:
        assert admin.cancel(conn, q, a.id) == "cancel requested"
        assert admin.cancel(conn, q, s.id) == "cancel requested"
    wait_until(lambda: job(dsn, a.id)["state"] == job(dsn, s.id)["state"] == "cancelled", what="both cancelled")
    worker.stop()
    thread.join(30)
    assert job(dsn, waiting.id)["state"] == "cancelled"
    assert [k for k, *_ in events(dsn, a.id)] == ["cancel_requested", "cancelled"]


@pytest.mark.parametrize("analyzed", [True, False])
def test_claim_query_walks_the_claim_index(app, dsn, analyzed):
    """In the claimer's session the claim is an index scan in claim order that
    stops at its LIMIT, with fresh statistics and (a queue filled faster than
    autovacuum analyses it) without any."""
    from pgsteady.claiming import CLAIM_SESSION_OPTIONS

    @app.task(name="t")
    def t() -> None: ...

    app.enqueue_many([("t", {"i": i}) for i in range(20_000)])
    with psycopg.connect(dsn, autocommit=True, options=CLAIM_SESSION_OPTIONS) as conn:
        if analyzed:
            conn.execute("ANALYZE pgsteady.jobs")
        q = for_schema("pgsteady").complete_and_claim
        for queues in (None, ["default"]):
            plan = conn.execute("EXPLAIN (FORMAT JSON) " + q, dict(
                queues=queues, limit=10, lease=timedelta(seconds=30), worker_id="w", release=None,
                ids=[1, 2], tokens=[uuid.uuid4(), uuid.uuid4()])).fetchone()[0]
            assert "jobs_claim_idx" in _index_scans(plan), plan
            assert "Sort" not in json.dumps(plan) and "Bitmap" not in json.dumps(plan), plan


def _index_scans(node) -> set[str]:
    found = set()
    if isinstance(node, dict):
        if "Index Name" in node:
            found.add(node["Index Name"])
        for v in node.values():
            found |= _index_scans(v)
    elif isinstance(node, list):
        for v in node:
            found |= _index_scans(v)
    return found


def test_stop_hands_back_unfinished_jobs_without_charging_an_attempt(app, dsn):
    started = threading.Event()

    @app.task(name="long")
    async def long() -> None:
        started.set()
        await asyncio.sleep(60)

    ref = app.enqueue("long", {})
    worker = Worker(app, concurrency=1, lease=30, grace=0.2, poll_interval=0.1)
    thread = start_in_thread(worker)
    assert started.wait(30)
    assert job(dsn, ref.id)["attempt"] == 1
    worker.stop()
    thread.join(30)
    row = job(dsn, ref.id)
    assert (row["state"], row["attempt"], row["lease_token"]) == ("waiting", 0, None)
    assert [k for k, *_ in events(dsn, ref.id)] == ["handed_back"]


def test_workers_register_with_unique_ids(app, dsn):
    @app.task(name="t")
    def t() -> None: ...

    w1, w2 = Worker(app), Worker(app)
    assert w1.id != w2.id and f":{__import__('os').getpid()}:" in w1.id
    thread = start_in_thread(w1)
    wait_until(lambda: scalar(dsn, "SELECT count(*) FROM pgsteady.workers WHERE id = %s", [w1.id]) == 1,
               what="worker row")
    w1.stop()
    thread.join(30)
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.workers") == 0


def test_lost_lease_is_noticed_by_heartbeat(app, dsn):
    started = threading.Event()
    cancelled = threading.Event()

    @app.task(name="watch")
    async def watch(ctx) -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    ref = app.enqueue("watch", {})
    worker = Worker(app, concurrency=1, lease=1.5, poll_interval=0.1)
    thread = start_in_thread(worker)
    assert started.wait(30)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.jobs SET lease_token = gen_random_uuid() WHERE id = %s", [ref.id])
    assert cancelled.wait(10)
    worker.stop()
    thread.join(30)
    assert "late_write_rejected" in [k for k, *_ in events(dsn, ref.id)]
    assert states(dsn) == {"running": 1}


def test_checkpoints_carry_progress_to_the_next_attempt(app, dsn):
    seen = []

    @app.task(name="resumable", retry=FAST)
    def resumable(ctx) -> None:
        seen.append(ctx.last_checkpoint)
        ctx.checkpoint({"done": 10 * ctx.attempt})
        if ctx.attempt < 3:
            raise RuntimeError("stopped halfway")

    @app.task(name="tx_resumable", transactional=True, retry=FAST)
    def tx_resumable(ctx) -> None:
        seen.append(("tx", ctx.last_checkpoint))
        ctx.checkpoint({"step": ctx.attempt})
        if ctx.attempt == 1:
            raise RuntimeError("rolls the checkpoint back with the work")

    ref = app.enqueue("resumable", {})
    drain(app, concurrency=1)
    assert seen == [None, {"done": 10}, {"done": 20}]
    assert job(dsn, ref.id)["checkpoint"] == {"done": 30}
    seen.clear()
    ref = app.enqueue("tx_resumable", {})
    drain(app, concurrency=1)
    assert seen == [("tx", None), ("tx", None)]
    assert job(dsn, ref.id)["checkpoint"] == {"step": 2}


def test_a_worker_busy_with_long_jobs_claims_no_more_than_it_can_run(app, dsn):
    """Claiming ahead is only for short jobs: long ones stay claimable by other workers."""

    @app.task(name="slowish")
    async def slowish() -> None:
        await asyncio.sleep(0.3)

    app.enqueue_many([("slowish", {}) for _ in range(6)])
    worker = Worker(app, concurrency=2, lease=30, poll_interval=0.05)
    thread = start_in_thread(worker)
    seen = []
    wait_until(lambda: seen.append(scalar(dsn, "SELECT count(*) FROM pgsteady.jobs WHERE state = 'running'"))
               or states(dsn).get("succeeded") == 6, timeout=30, interval=0.02, what="all done")
    worker.stop()
    thread.join(30)
    assert max(seen) == 2
    assert worker.claimer.conns[1] is None  # no second round in flight for long jobs, so no second connection


def test_short_jobs_drain_on_two_claim_lanes_each_run_once(app, dsn):
    """Short jobs are claimed ahead and by two rounds in flight at once; every
    job still runs exactly once and every completion is recorded."""
    runs: dict[int, int] = {}

    @app.task(name="quick")
    async def quick(i: int) -> None:
        runs[i] = runs.get(i, 0) + 1

    app.enqueue_many([("quick", {"i": i}) for i in range(5_000)])
    worker = Worker(app, concurrency=10, lease=30, poll_interval=0.1)
    stats = asyncio.run(worker.run(until_idle=True))
    assert worker.claimer.conns[1] is not None  # the second lane did run rounds
    assert sorted(runs) == list(range(5_000)) and set(runs.values()) == {1}
    assert (stats.claimed, stats.succeeded, stats.rejected) == (5_000, 5_000, 0)
    assert states(dsn) == {"succeeded": 5_000}
    assert scalar(dsn, "SELECT count(*) FROM pgsteady.events") == 0



def test_a_worker_runs_until_idle_again_for_jobs_enqueued_since(app, dsn):
    seen = []

    @app.task(name="quick")
    async def quick(i: int) -> None:
        seen.append(i)

    async def twice() -> None:
        worker = Worker(app, concurrency=4, lease=30, poll_interval=0.1)
        app.enqueue_many([("quick", {"i": i}) for i in range(150)])
        await worker.run(until_idle=True)
        app.enqueue_many([("quick", {"i": i}) for i in range(150, 300)])
        stats = await worker.run(until_idle=True)
        assert stats.succeeded == 300

    asyncio.run(twice())
    assert sorted(seen) == list(range(300))
