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


def test_a_task_that_raises_retry_in_waits_at_least_that_long(app, dsn):
    """RetryIn(seconds): the next attempt no sooner than asked, even when the
    task's own policy would retry at once; a longer policy wins over it."""
    from pgsteady import RetryIn

    @app.task(name="throttled", retry=Retry(base=0, jitter=0))
    async def throttled() -> None:
        raise RetryIn(300, "the provider asked for 300 s")

    @app.task(name="patient", retry=Retry(base=900, jitter=0))
    def patient() -> None:
        raise RetryIn(5)

    short, long_ = app.enqueue("throttled", {}), app.enqueue("patient", {})
    drain(app)
    wait = "SELECT extract(epoch FROM run_at - now()) FROM pgsteady.jobs WHERE id = %s"
    assert 290 < scalar(dsn, wait, [short.id]) <= 300
    assert 890 < scalar(dsn, wait, [long_.id]) <= 900
    assert job(dsn, short.id)["errors"][-1]["error"] == "RetryIn: the provider asked for 300 s"
    assert app.retries.after_failure("throttled", 1, at_least=1e300) == 7 * 24 * 3600.0  # clamped like a policy
    with pytest.raises(ValueError):
        RetryIn(float("nan"))


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
    from pgsteady.claiming import CLAIM_SESSION_SETTINGS
    from pgsteady.topology import Link

    @app.task(name="t")
    def t() -> None: ...

    app.enqueue_many([("t", {"i": i}) for i in range(20_000)])
    with Link(dsn, settings=CLAIM_SESSION_SETTINGS).connect(autocommit=True) as conn:
        if analyzed:
            conn.execute("ANALYZE pgsteady.jobs")
        q = for_schema("pgsteady").complete_and_claim
        for queues in (None, ["default"]):
            plan = conn.execute("EXPLAIN (FORMAT JSON) " + q, dict(
                queues=queues, limit=10, lease=timedelta(seconds=30), worker_id="w", release=None,
                ids=[1, 2], tokens=[uuid.uuid4(), uuid.uuid4()])).fetchone()[0]
            assert "jobs_claim_idx" in _index_scans(plan), plan
            assert "Sort" not in json.dumps(plan) and "Bitmap" not in json.dumps(plan), plan


@pytest.mark.parametrize("analyzed", [True, False])
def test_limited_claim_query_walks_the_claim_index(app, dsn, analyzed):
    """The claim of a limited queue is pinned too: the same index scan in
    claim order, no sort, no bitmap, in the claimer's session."""
    from pgsteady.claiming import CLAIM_SESSION_SETTINGS
    from pgsteady.topology import Link

    @app.task(name="t", queue="limited")
    def t() -> None: ...

    app.set_queue_limits("limited", max_running=5)
    app.enqueue_many([("t", {"i": i}) for i in range(20_000)])
    with Link(dsn, settings=CLAIM_SESSION_SETTINGS).connect(autocommit=True) as conn:
        if analyzed:
            conn.execute("ANALYZE pgsteady.jobs")
        plan = conn.execute("EXPLAIN (FORMAT JSON) " + for_schema("pgsteady").claim_limited, dict(
            queue="limited", limit=10, lease=timedelta(seconds=30), worker_id="w", release=None)).fetchone()[0]
    assert "jobs_claim_idx" in _index_scans(plan), plan
    assert "Sort" not in json.dumps(plan) and "Bitmap" not in json.dumps(plan), plan


def test_both_claims_write_and_read_back_the_same_row():
    """One claim text: both queries include the _claimed fragment and read
    back the same named columns."""
    q = for_schema("pgsteady")
    from pgsteady.queries import _raw

    claimed = " ".join(_raw()["_claimed"].split())
    for query in (q.complete_and_claim, q.claim_limited):
        assert claimed.replace("{schema}", '"pgsteady"') in " ".join(query.split())
    assert "now()" not in _raw()["_claimed"]


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



def test_quick_attempts_share_slot_tasks_and_one_that_awaits_keeps_its_own(app, dsn):
    """Attempts that end in their first step run back to back on a few slot
    tasks (no task each); one that awaits stays on one task from its first
    line to its last, and every attempt logs with its own job's fields."""
    from pgsteady.monitoring import logs

    quick_tasks: list[asyncio.Task] = []
    wrong_fields: list[int] = []
    kept: dict[int, bool] = {}

    @app.task(name="quick")
    async def quick(ctx, i: int) -> None:
        quick_tasks.append(asyncio.current_task())
        if (logs.current_job() or {}).get("job_id") != ctx.id:
            wrong_fields.append(ctx.id)

    @app.task(name="awaits")
    async def awaits(ctx, i: int) -> None:
        first = asyncio.current_task()
        await asyncio.sleep(0.01)
        kept[i] = asyncio.current_task() is first and logs.current_job()["job_id"] == ctx.id

    app.enqueue_many([("quick", {"i": i}) for i in range(2_000)] + [("awaits", {"i": i}) for i in range(50)])
    stats = drain(app, concurrency=20)
    assert stats.succeeded == 2_050 and states(dsn) == {"succeeded": 2_050}
    assert len(quick_tasks) == 2_000 and len(set(quick_tasks)) < 200  # a task per attempt would be 2,000
    assert not wrong_fields
    assert sorted(kept) == list(range(50)) and all(kept.values())


@pytest.mark.parametrize("concurrency", [1, 20])
def test_a_context_variable_set_by_one_job_is_not_seen_by_the_next(app, dsn, concurrency):
    """Quick attempts share slot tasks, but each runs in a context of its
    own: a request id or tenant a task function puts in a ContextVar must
    not leak into the next job run by the same slot task, nor into a job
    that awaits, nor into the slot task that the end of a job starts (at
    concurrency 1, every job after one that awaited)."""
    import contextvars

    tenant: contextvars.ContextVar[int | None] = contextvars.ContextVar("tenant", default=None)
    seen: list[int | None] = []

    @app.task(name="quick")
    async def quick(i: int) -> None:
        seen.append(tenant.get())
        tenant.set(i)

    @app.task(name="awaits")
    async def awaits(i: int) -> None:
        seen.append(tenant.get())
        tenant.set(i)
        await asyncio.sleep(0.001)
        assert tenant.get() == i  # its own value survives its awaits
        seen.append(tenant.get() if tenant.get() != i else None)

    app.enqueue_many([("quick", {"i": i}) for i in range(500)] + [("awaits", {"i": i}) for i in range(20)])
    stats = drain(app, concurrency=concurrency)
    assert stats.succeeded == 520 and states(dsn) == {"succeeded": 520}
    assert len(seen) == 540 and set(seen) == {None}


def test_a_job_keeps_its_page_through_claim_and_completion(app, dsn):
    """The two updates of a job's life write their row versions on the job's
    own page (fillfactor 50, migration 011): an update that finds its page
    full must also lock the old version in a WAL record of its own and
    extend the table, which made every round slower. On full pages (as
    before 011) 99% of jobs move; here about 40% still do, because a page
    is pruned of its old versions only once no snapshot (the other claim
    lane's round) can see them, so the bound is two thirds."""

    @app.task(name="quick")
    async def quick(i: int) -> None: ...

    app.enqueue_many([("quick", {"i": i}) for i in range(4_000)])
    page = "SELECT id, (ctid::text::point)[0]::bigint FROM pgsteady.jobs"
    with psycopg.connect(dsn) as conn:
        before = dict(conn.execute(page).fetchall())
    stats = drain(app, concurrency=20)
    with psycopg.connect(dsn) as conn:
        after = dict(conn.execute(page).fetchall())
    assert stats.succeeded == 4_000 and states(dsn) == {"succeeded": 4_000}
    moved = sum(before[i] != after[i] for i in before)
    assert moved < len(before) * 2 // 3, f"{moved} of {len(before)} jobs left their page"


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


def test_notify_cancel_from_a_role_without_privileges_cancels_nothing(app, dsn):
    """The attack: a role with no privilege on the schema sends the control
    notification with a running job's id. The worker may look, but the job's
    row holds no cancel request, so the job runs on and succeeds."""
    started, release = threading.Event(), threading.Event()

    @app.task(name="victim")
    def victim(ctx) -> None:
        started.set()
        release.wait(30)
        ctx.raise_if_cancelled()

    ref = app.enqueue("victim", {}, key="victim:1")
    worker = Worker(app, concurrency=2, lease=30, poll_interval=0.1)
    thread = start_in_thread(worker)
    assert started.wait(30)
    role = f"attacker_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} NOLOGIN NOSUPERUSER")
        try:
            with conn.transaction():
                conn.execute(f"SET LOCAL ROLE {role}")
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    with conn.transaction():
                        conn.execute("UPDATE pgsteady.jobs SET cancel_requested = true")
                for payload in (f"cancel:{ref.id}", str(ref.id)):
                    conn.execute("SELECT pg_notify('pgsteady_control', %s)", [payload])
            other = app.enqueue("victim", {}, run_at=timedelta(hours=1))
            from pgsteady import jobs as admin
            assert admin.cancel(conn, for_schema("pgsteady"), other.id, actor="test") == "cancelled"
        finally:
            release.set()
            wait_until(lambda: job(dsn, ref.id)["state"] != "running", what="the victim finished")
            worker.stop()
            thread.join(30)
            conn.execute(f"DROP ROLE {role}")
    row = job(dsn, ref.id)
    assert row["state"] == "succeeded" and row["key_active"]
    assert [k for k, *_ in events(dsn, ref.id)] == []


def test_a_cancel_that_arrives_after_the_function_returned_does_not_cancel_the_job(app, dsn):
    """Cancelled only while the function runs: a function that returns has
    finished, and its job ends succeeded, whatever was asked meanwhile."""
    from pgsteady import jobs as admin

    returned = threading.Event()

    @app.task(name="quick_then_wait")
    def quick_then_wait(ctx) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            # Asked while still running; the function then returns anyway.
            assert admin.cancel(conn, for_schema("pgsteady"), ctx.id, actor="someone") == "cancel requested"
        returned.set()

    ref = app.enqueue("quick_then_wait", {})
    drain(app)
    assert returned.is_set()
    assert job(dsn, ref.id)["state"] == "succeeded"


def test_a_running_job_cancelled_by_hand_names_who_asked(app, dsn):
    from pgsteady import jobs as admin

    @app.task(name="polite")
    def polite(ctx) -> None:
        with psycopg.connect(dsn, autocommit=True) as conn:
            admin.cancel(conn, for_schema("pgsteady"), ctx.id, actor="dash:alice")
        for _ in range(3000):
            ctx.raise_if_cancelled()
            time.sleep(0.01)

    ref = app.enqueue("polite", {})
    drain(app, lease=3)
    assert job(dsn, ref.id)["state"] == "cancelled"
    kinds = {k: (msg, data) for k, msg, _, data in events(dsn, ref.id)}
    assert kinds["cancelled"][1] == {"requested_by": "dash:alice"}


class _BrokenStr(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no text for you")


@pytest.mark.parametrize("exc,expected", [
    (ValueError("bad \x00 byte"), "ValueError: bad \\x00 byte"),
    (_BrokenStr(), "_BrokenStr: (str() of the exception raised RuntimeError)"),
    (ValueError("x" * 5_000_000), "ValueError: " + "x" * 100),
    (ValueError("lone \ud800 surrogate"), "ValueError: lone \\ud800 surrogate"),
])
def test_a_failure_whose_message_cannot_be_stored_as_is_is_still_recorded(app, dsn, exc, expected, caplog):
    """The failure path never fails: the job does not stay running with a
    renewed lease; its error is stored, cut and made storable, and logged."""

    @app.task(name="raises", max_attempts=1)
    def raises() -> None:
        raise exc

    ref = app.enqueue("raises", {})
    with caplog.at_level("INFO", logger="pgsteady.worker"):
        stats = drain(app)
    row = job(dsn, ref.id)
    assert row["state"] == "failed" and stats.failed == 1
    stored = row["errors"][0]["error"]
    assert stored.startswith(expected) and len(stored) < 2_100
    assert len(row["errors"][0]["traceback"]) < 21_000
    assert any(f"job {ref.id}" in r.getMessage() and "failed" in r.getMessage() for r in caplog.records)


def test_a_timed_out_sync_attempt_keeps_its_slot_until_its_thread_returns(app, dsn):
    """Python cannot stop a thread: the timed-out attempt is told (ctx.cancelled)
    and the retry starts only after the thread returned, so two attempts of
    one job never overlap."""
    lock = threading.Lock()
    running, overlaps, attempts = [0], [], []

    @app.task(name="stubborn", timeout=0.2, max_attempts=2, retry=FAST)
    def stubborn(ctx) -> None:
        with lock:
            running[0] += 1
            overlaps.append(running[0])
            attempts.append(ctx.attempt)
        try:
            if ctx.attempt == 1:
                deadline = time.monotonic() + 30
                while not ctx.cancelled and time.monotonic() < deadline:
                    time.sleep(0.01)
                time.sleep(0.5)  # keeps running a while after being told
        finally:
            with lock:
                running[0] -= 1

    ref = app.enqueue("stubborn", {})
    drain(app, concurrency=2)
    assert attempts == [1, 2] and max(overlaps) == 1
    row = job(dsn, ref.id)
    assert row["state"] == "succeeded" and row["errors"][0]["error"] == "timed out after 0.2s"


def test_ctx_calls_each_have_one_form_per_kind_of_code(app, dsn):
    """alog/acheckpoint in async code, log/checkpoint in sync code; the sync
    form called on the event loop is refused instead of blocking it."""
    seen = []

    @app.task(name="async_task")
    async def async_task(ctx) -> None:
        await ctx.alog("async line", n=1)
        await ctx.acheckpoint({"at": 1})
        try:
            ctx.log("wrong form")
        except RuntimeError as exc:
            seen.append(str(exc))

    @app.task(name="sync_task")
    def sync_task(ctx) -> None:
        assert ctx.log("sync line") is None
        assert ctx.checkpoint({"at": 2}) is None

    a, s = app.enqueue("async_task", {}), app.enqueue("sync_task", {})
    drain(app)
    assert "await ctx.alog" in seen[0]
    assert [m for k, m, *_ in events(dsn, a.id) if k == "log"] == ["async line"]
    assert [m for k, m, *_ in events(dsn, s.id) if k == "log"] == ["sync line"]
    assert job(dsn, a.id)["checkpoint"] == {"at": 1} and job(dsn, s.id)["checkpoint"] == {"at": 2}


def test_an_async_task_enqueues_a_follow_up_in_its_own_transaction(app, dsn):
    @app.task(name="follow_up")
    def follow_up(n: int) -> None: ...

    @app.task(name="parent", transactional=True, max_attempts=2, retry=FAST)
    async def parent(ctx) -> None:
        await app.enqueue_async("follow_up", {"n": ctx.attempt}, conn=ctx.conn)
        if ctx.attempt == 1:
            raise RuntimeError("rolls the follow-up back")

    app.enqueue("parent", {})
    drain(app)
    with psycopg.connect(dsn) as conn:
        rows = conn.execute("SELECT args, state::text FROM pgsteady.jobs WHERE task = 'follow_up'").fetchall()
    assert rows == [({"n": 2}, "succeeded")]


def test_rescued_jobs_wait_the_backoff_of_their_task(app, dsn):
    from pgsteady.maintenance import Rescuer

    @app.task(name="crashy", retry=Retry(base=600, jitter=0))
    def crashy() -> None: ...

    ref = app.enqueue("crashy", {})
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("UPDATE pgsteady.jobs SET state = 'running', attempt = 1, lease_token = gen_random_uuid(), "
                     "lease_expires_at = now() - interval '1 second'")

    async def rescue() -> int:
        async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
            return await Rescuer(for_schema("pgsteady"), app.retries, worker_id="r", release=None,
                                 interval=1).run_once(conn)

    assert asyncio.run(rescue()) == 1
    wait = scalar(dsn, "SELECT extract(epoch FROM run_at - now()) FROM pgsteady.jobs WHERE id = %s", [ref.id])
    assert 590 < wait <= 600


@pytest.mark.parametrize("kwargs,message", [
    (dict(retention={"succeded": timedelta(days=1)}), "retention: unknown option 'succeded'; did you mean 'succeeded'?"),
    (dict(retention={"failed": 3}), "retention['failed'] must be a non-negative datetime.timedelta"),
    (dict(concurency=4), "Worker: unknown option 'concurency'; did you mean 'concurrency'?"),
    (dict(concurrency=0), "concurrency must be an integer between 1 and 10000"),
    (dict(lease=float("nan")), "lease (seconds) must be a number >= 1"),
    (dict(queues="mail"), "queues must be a non-empty list"),
])
def test_worker_configuration_is_refused_up_front_with_one_line(app, kwargs, message):
    from pgsteady.errors import ConfigError

    with pytest.raises(ConfigError) as err:
        Worker(app, **kwargs)
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


def test_a_transactional_sync_task_that_commits_after_its_timeout_stays_succeeded(app, dsn):
    """Its writes and the job's success committed together: the timeout
    cannot undo them, so the job is not failed (or run again) after all."""

    @app.task(name="slow_tx", transactional=True, timeout=0.1, max_attempts=2, retry=FAST)
    def slow_tx(ctx) -> None:
        deadline = time.monotonic() + 30
        while not ctx.cancelled and time.monotonic() < deadline:
            time.sleep(0.01)
        ctx.conn.execute("CREATE TABLE IF NOT EXISTS done_tx (attempt int)")
        ctx.conn.execute("INSERT INTO done_tx VALUES (%s)", [ctx.attempt])

    ref = app.enqueue("slow_tx", {})
    stats = drain(app)
    assert job(dsn, ref.id)["state"] == "succeeded" and job(dsn, ref.id)["attempt"] == 1
    assert scalar(dsn, "SELECT array_agg(attempt) FROM done_tx") == [1]
    assert stats.rejected == 0


def test_one_retry_policy_answers_every_path(app):
    """Retries.after_failure is what failures, timeouts, unknown tasks and
    rescues ask; a policy that returns nonsense or raises cannot break the
    failure path."""
    from pgsteady.retries import MAX_BACKOFF

    app.task(name="fixed", retry=lambda n: 7.0)(lambda: None)
    app.task(name="nan", retry=lambda n: float("nan"))(lambda: None)
    app.task(name="huge", retry=lambda n: 1e300)(lambda: None)
    app.task(name="broken", retry=lambda n: 1 / 0)(lambda: None)
    app.task(name="exp", retry=Retry(base=1, cap=100, jitter=0))(lambda: None)
    r = app.retries
    assert r.after_failure("fixed", 3) == 7.0
    assert r.after_failure("nan", 3) == 0.0
    assert r.after_failure("huge", 3) == MAX_BACKOFF
    assert 0 <= r.after_failure("broken", 1) <= 2.0  # the default policy instead
    assert [r.after_failure("exp", n) for n in (1, 2, 3, 10)] == [1, 2, 4, 100]
    assert [r.after_failure("not.here", n) for n in (1, 5, 9)] == [2, 32, 60]  # unknown tasks: capped at a minute
    assert Retry(base=1, cap=10, jitter=0).backoff(10_000) == 10
