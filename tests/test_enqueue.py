"""Enqueueing: transactions, idempotency keys, bulk, and refusing bad input."""

from __future__ import annotations

import asyncio
import os
import threading
from datetime import datetime, timedelta, timezone

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgsteady import App
from pgsteady.errors import ConfigError, DatabaseUnavailable, InvalidPayload, UnknownTask

from .helpers import scalar, wait_until


def _register(app: App):
    @app.task(name="send_digest", queue="mail", priority=3, max_attempts=5)
    def send_digest(user_id: int) -> None: ...

    @app.task(name="import_post")
    def import_post(post_id: int) -> None: ...

    return send_digest


def _count(dsn: str) -> int:
    return scalar(dsn, "SELECT count(*) FROM pgsteady.jobs")


def test_task_enqueue_stores_task_defaults(app, dsn):
    send_digest = _register(app)
    ref = send_digest.enqueue(user_id=7)
    assert ref.created
    row = psycopg.connect(dsn).execute(
        "SELECT task, queue, priority, max_attempts, args, state::text FROM pgsteady.jobs WHERE id = %s", [ref.id]).fetchone()
    assert row == ("send_digest", "mail", 3, 5, {"user_id": 7}, "waiting")


def test_enqueue_in_callers_transaction_is_visible_only_after_commit(app, dsn):
    _register(app)
    with psycopg.connect(dsn) as conn:
        ref = app.enqueue("import_post", {"post_id": 1}, conn=conn)
        assert _count(dsn) == 0  # not committed yet: no worker can see it
        conn.commit()
    assert _count(dsn) == 1 and ref.created
    with psycopg.connect(dsn) as conn:
        app.enqueue("import_post", {"post_id": 2}, conn=conn)
        conn.rollback()
    assert _count(dsn) == 1


def test_same_key_while_waiting_returns_existing_job(app, dsn):
    _register(app)
    a = app.enqueue("import_post", {"post_id": 1}, key="post:1")
    b = app.enqueue("import_post", {"post_id": 1}, key="post:1")
    assert (a.created, b.created, a.id == b.id) == (True, False, True)
    assert _count(dsn) == 1


@pytest.mark.parametrize("state,finished_ago,expect_new", [
    ("running", None, False),
    ("succeeded", timedelta(hours=1), False),
    ("succeeded", timedelta(hours=25), True),   # past the default 24 h key retention
    ("failed", timedelta(minutes=1), True),
    ("cancelled", timedelta(minutes=1), True),
])
def test_key_blocks_while_running_or_recently_succeeded(app, dsn, state, finished_ago, expect_new):
    _register(app)
    first = app.enqueue("import_post", {"post_id": 1}, key="k")
    with psycopg.connect(dsn, autocommit=True) as conn:
        # Put the job in the state under test the way the worker would.
        conn.execute(
            "UPDATE pgsteady.jobs SET state = %s::pgsteady.job_state, finished_at = now() - %s::interval,"
            " key_active = %s WHERE id = %s",
            [state, finished_ago or timedelta(0), state in ("running", "succeeded"), first.id])
    second = app.enqueue("import_post", {"post_id": 1}, key="k")
    assert second.created is expect_new
    assert (second.id != first.id) is expect_new


def test_eight_threads_enqueueing_one_key_make_one_job(app, dsn):
    _register(app)
    barrier = threading.Barrier(8)
    refs = []

    def go():
        barrier.wait()
        refs.append(app.enqueue("import_post", {"post_id": 1}, key="post:1"))

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.id for r in refs}) == 1
    assert sum(r.created for r in refs) == 1
    assert _count(dsn) == 1


def test_eight_connections_racing_in_open_transactions_make_one_job(app, dsn):
    """The unique index decides even when the racing inserts are uncommitted."""
    _register(app)
    barrier = threading.Barrier(8)
    created = []

    def go():
        with psycopg.connect(dsn) as conn:
            barrier.wait()
            created.append(app.enqueue("import_post", {"post_id": 1}, key="k", conn=conn).created)
            conn.commit()

    threads = [threading.Thread(target=go) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(created) == [False] * 7 + [True]
    assert _count(dsn) == 1


def test_enqueue_many_returns_refs_in_input_order(app, dsn):
    _register(app)
    existing = app.enqueue("import_post", {"post_id": 0}, key="post:0")
    items = [("import_post", {"post_id": i}) for i in range(1, 6)]
    items.insert(2, {"task": "import_post", "args": {"post_id": 0}, "key": "post:0"})
    items.append({"task": "send_digest", "args": {"user_id": 9}, "key": "d:9"})
    items.append({"task": "send_digest", "args": {"user_id": 9}, "key": "d:9"})  # same key twice in one batch
    refs = app.enqueue_many(items)
    assert refs[2].id == existing.id and not refs[2].created
    assert refs[-1].id == refs[-2].id and refs[-2].created and not refs[-1].created
    with psycopg.connect(dsn) as conn:
        for item, ref in zip(items, refs):
            args = item[1] if isinstance(item, tuple) else item["args"]
            assert conn.execute("SELECT args FROM pgsteady.jobs WHERE id = %s", [ref.id]).fetchone()[0] == args
    assert _count(dsn) == 1 + 5 + 1


def test_enqueue_many_in_chunks(app, dsn):
    _register(app)
    refs = app.enqueue_many([("import_post", {"post_id": i}) for i in range(12_001)])
    assert len({r.id for r in refs}) == 12_001
    assert [r.id for r in refs] == sorted(r.id for r in refs)
    assert _count(dsn) == 12_001


def _wire(dsn: str, path, write) -> list[str]:
    """What ``write(conn)`` sent on an autocommit connection, from libpq's
    trace: one line per message the client sent (Parse, Sync, Query, ...)."""
    from psycopg import pq

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.pgconn.trace(fd)
            conn.pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
            write(conn)
            conn.pgconn.untrace()
    finally:
        os.close(fd)
    return [" ".join(line.split("\t")[2:]) for line in path.read_text().splitlines() if line.startswith("F\t")]


def _round_trips(sent: list[str]) -> int:
    # An extended-protocol statement ends with Sync, a simple one is a Query.
    return sum(1 for m in sent if m == "Sync" or m.startswith("Query"))


def _transactions(sent: list[str]) -> list[str]:
    return [m for m in sent if m.startswith("Query") and ("BEGIN" in m or "COMMIT" in m)]


@pytest.mark.parametrize("items,round_trips,in_transaction", [
    ([("import_post", {"post_id": 1})], 1, False),
    ([{"task": "import_post", "args": {"post_id": 1}, "key": "post:1"}], 1, False),
    ([("import_post", {"post_id": i}) for i in range(150)], 2, False),  # ids reserved, then one COPY
    ([("import_post", {"post_id": i}) for i in range(40)], 1, False),
    ([{"task": "import_post", "args": {"post_id": i}, "key": f"post:{i}"} for i in range(40)], 3, True),
    ([{"task": "import_post", "args": {}, "run_at": timedelta(hours=1)}]
     + [("import_post", {"post_id": i}) for i in range(150)], 4, True),
])
def test_on_its_own_connection_a_write_of_one_statement_takes_one_round_trip(app, dsn, tmp_path, items,
                                                                              round_trips, in_transaction):
    """With no connection given, enqueue writes on an autocommit connection
    of its own: one job is one statement and one round trip, without BEGIN
    or COMMIT; only a batch that may need more than one write (keys, or a
    COPY with some run_at) runs in a transaction, so it stays all or nothing."""
    from pgsteady import _writes_sync
    from pgsteady.payloads import job_row

    _register(app)
    rows = [job_row(app, item) for item in items]
    refs: list = []
    sent = _wire(dsn, tmp_path / "trace", lambda conn: refs.extend(
        _writes_sync.insert(conn, app.queries, rows, app.key_retention, own=True)))
    assert _round_trips(sent) == round_trips, sent
    assert bool(_transactions(sent)) == in_transaction, sent
    assert [r.id for r in refs] == sorted(r.id for r in refs) and all(r.created for r in refs)
    assert _count(dsn) == len(items)


def test_a_keyed_batch_of_any_size_is_one_insert_and_settles_every_key(app, dsn, tmp_path):
    """Past the old 5,000-row chunks: 6,000 keyed jobs go in with one INSERT,
    and the same batch again returns the same jobs without writing any."""
    _register(app)
    items = [{"task": "import_post", "args": {"post_id": i}, "key": f"post:{i}"} for i in range(6000)]
    first = app.enqueue_many(items)
    again = app.enqueue_many(items)
    assert all(r.created for r in first) and not any(r.created for r in again)
    assert [r.id for r in again] == [r.id for r in first] == sorted(r.id for r in first)
    assert _count(dsn) == 6000


def test_a_big_batch_without_keys_goes_in_by_copy_with_every_option_kept(app, dsn):
    """From 100 jobs without keys enqueue_many uses COPY: ids still ascend in
    input order, and queue, priority, run_at (given or the default), max
    attempts and awkward JSON text arrive as an INSERT would store them."""
    _register(app)
    later = datetime.now(timezone.utc) + timedelta(hours=2)
    awkward = {"text": "tab\there\nnew line, back\\slash \\N, quote \" and ünï €", "nested": {"l": [1, None, True]}}
    items = [("import_post", {"post_id": i}) for i in range(150)]
    items[7] = {"task": "send_digest", "args": {"user_id": 7}, "priority": -2, "run_at": later}
    items[8] = {"task": "import_post", "args": awkward, "queue": "imports"}
    with psycopg.connect(dsn, autocommit=True) as conn:
        before = conn.execute("SELECT now()").fetchone()[0]
        refs = app.enqueue_many(items)
        rows = {r[0]: r[1:] for r in conn.execute(
            "SELECT id, queue, task, args, priority, run_at, max_attempts, key, key_active, state::text, created_at "
            "FROM pgsteady.jobs").fetchall()}
    assert [r.id for r in refs] == sorted(r.id for r in refs) and len(rows) == 150
    assert all(r.created and r.key is None for r in refs)
    queue, task, args, priority, run_at, max_attempts, key, key_active, state, created_at = rows[refs[7].id]
    assert (queue, task, args, priority, max_attempts) == ("mail", "send_digest", {"user_id": 7}, -2, 5)
    assert abs((run_at - later).total_seconds()) < 0.001
    assert rows[refs[8].id][:3] == ("imports", "import_post", awkward)
    queue, task, args, priority, run_at, max_attempts, key, key_active, state, created_at = rows[refs[0].id]
    assert (queue, task, args, priority, max_attempts, key, key_active, state) == (
        "default", "import_post", {"post_id": 0}, 0, app.tasks["import_post"].max_attempts, None, False, "waiting")
    assert run_at == created_at and run_at >= before  # run_at defaults to the transaction's now(), as in an INSERT


def test_a_copied_batch_wakes_an_idle_worker_at_once(app, dsn):
    """COPY fires the same notify trigger as an INSERT: a worker whose poll
    interval is a minute runs the batch as soon as it commits."""
    from pgsteady import Worker

    done = []

    @app.task(name="tick")
    async def tick(i: int) -> None:
        done.append(i)

    worker = Worker(app, concurrency=4, poll_interval=60)
    thread = threading.Thread(target=lambda: asyncio.run(worker.run()), daemon=True)
    thread.start()
    app.enqueue("tick", {"i": -1})  # the worker listens once it ran this one
    wait_until(lambda: done == [-1], timeout=20, what="the first job")
    app.enqueue_many([("tick", {"i": i}) for i in range(200)])
    wait_until(lambda: len(done) == 201, timeout=20, what="the copied batch, well before the poll interval")
    worker.stop()
    thread.join(30)
    assert sorted(done) == list(range(-1, 200))


def test_run_at_in_the_future(app, dsn):
    _register(app)
    ref = app.enqueue("import_post", {"post_id": 1}, run_at=timedelta(hours=1))
    delay = scalar(dsn, "SELECT extract(epoch FROM run_at - now()) FROM pgsteady.jobs WHERE id = %s", [ref.id])
    assert 3500 < delay <= 3600


@pytest.mark.parametrize("call,error,message", [
    (lambda a: a.enqueue("import_pots", {"post_id": 1}), UnknownTask, "did you mean 'import_post'"),
    (lambda a: a.enqueue("import_post", [1, 2]), InvalidPayload, "must be a JSON object"),
    (lambda a: a.enqueue("import_post", {"when": datetime.now()}), InvalidPayload, "not JSON"),
    (lambda a: a.enqueue("import_post", {"x": float("nan")}), InvalidPayload, "not JSON"),
    (lambda a: a.enqueue("import_post", {"blob": "x" * (256 * 1024)}), InvalidPayload, "over the 262,144-byte limit"),
    (lambda a: a.enqueue("import_post", {}, run_at=datetime(2030, 1, 1)), InvalidPayload, "timezone-aware"),
    (lambda a: a.enqueue("import_post", {}, key=""), InvalidPayload, "key"),
    (lambda a: a.enqueue("import_post", {"title": "a\x00b"}), InvalidPayload, "NUL character"),
    (lambda a: a.enqueue_many([("import_post", {"post_id": 1}), ("nope", {})]), UnknownTask, "unknown task 'nope'"),
])
def test_bad_input_is_refused_and_stores_nothing(app, dsn, call, error, message):
    _register(app)
    with pytest.raises(error, match=message) as info:
        call(app)
    assert "\n" not in str(info.value)
    assert _count(dsn) == 0


def test_payload_limit_is_configurable(dsn):
    app = App(dsn=dsn, max_payload_bytes=100)
    _register(app)
    with pytest.raises(InvalidPayload, match="over the 100-byte limit"):
        app.enqueue("import_post", {"blob": "x" * 100})
    app.enqueue("import_post", {"blob": "x" * 50})
    app.close()


def test_bad_dsn_gives_one_line_without_the_password():
    app = App(dsn="postgresql://someone:s3cret-pw@127.0.0.1:1/nowhere")

    @app.task(name="t")
    def t() -> None: ...

    with pytest.raises(DatabaseUnavailable) as info:
        app.enqueue("t", {})
    text = str(info.value)
    assert "s3cret-pw" not in text and "\n" not in text and "127.0.0.1:1/nowhere" in text


def test_malformed_dsn_is_a_config_error():
    with pytest.raises(ConfigError, match="not a valid PostgreSQL connection string"):
        App(dsn="postgresql://a:b@host:notaport/db?foo=bar")


def test_task_options_are_checked_when_the_app_is_built():
    app = App(dsn="postgresql://x@127.0.0.1/x")
    with pytest.raises(ConfigError, match="max_attempts"):
        app.task(max_attempts=0)(lambda: None)
    with pytest.raises(ConfigError, match="transactional task needs `ctx`"):
        app.task(transactional=True)(lambda x: None)

    @app.task(name="dup")
    def a() -> None: ...

    with pytest.raises(ConfigError, match="two tasks are named 'dup'"):
        app.task(name="dup")(lambda: None)


text = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**53, 2**53) | text
    | st.floats(allow_nan=False, allow_infinity=False),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(text, children, max_size=4),
    max_leaves=20)


def _numbers_as_float(value):
    """jsonb keeps numbers as numeric: 1e16 comes back as the int 10000000000000000."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_numbers_as_float(v) for v in value]
    return {k: _numbers_as_float(v) for k, v in value.items()}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(args=st.dictionaries(text, json_values, max_size=5))
def test_any_json_object_round_trips(app, dsn, args):
    if "import_post" not in app.tasks:
        _register(app)
    ref = app.enqueue("import_post", args)
    stored = scalar(dsn, "SELECT args FROM pgsteady.jobs WHERE id = %s", [ref.id])
    assert _numbers_as_float(stored) == _numbers_as_float(args)


@pytest.mark.parametrize("item,message", [
    (dict(args={"t": "lone \ud800"}), "contain a lone surrogate"),
    (dict(args={"t": "x"}, key="k\ud800"), "key contains a lone surrogate"),
    (dict(args={"d": __import__("functools").reduce(lambda a, _: [a], range(5000), 1)}), "nest deeper than 64 levels"),
    (dict(args={"d": __import__("functools").reduce(lambda a, _: {"k": a}, range(65), 1)}), "nest deeper than 64 levels"),
    (dict(args={}, key="k" * 3000), "key is 3,000 bytes, over the 1,024-byte limit"),
    (dict(args={}, key="a\x00b"), "key contains a NUL character"),
    (dict(args={}, queue="q" * 9000), "queue name is 9,000 bytes, over the 200-byte limit"),
    (dict(args={}, queue=""), "queue name must be a non-empty string"),
    (dict(args={}, priority=40_000), "priority must be an integer between -32768 and 32767"),
    (dict(args={}, priority=True), "priority must be an integer between -32768 and 32767"),
])
def test_bad_job_input_is_refused_with_one_line_before_anything_is_written(app, dsn, item, message):
    _register(app)
    good = {"task": "import_post", "args": {"post_id": 1}}
    with pytest.raises(InvalidPayload) as err:
        app.enqueue_many([good, {"task": "import_post", **item}])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert _count(dsn) == 0


def test_args_nested_64_deep_are_accepted(app, dsn):
    import functools

    _register(app)
    app.enqueue("import_post", {"d": functools.reduce(lambda a, _: [a], range(62), 1)})
    assert _count(dsn) == 1


@pytest.mark.parametrize("call,message", [
    (lambda a: a.set_queue_limits("mail", max_running=2**31), "max_running must be an integer between 1 and 2147483647"),
    (lambda a: a.set_queue_limits("mail", max_per_second=0), "max_per_second must be an integer between 1 and 2147483647"),
    (lambda a: a.set_queue_limits("q" * 500, max_running=1), "queue name is 500 bytes"),
    (lambda a: a.task(name="t", max_attempts=2**31)(lambda: None), "max_attempts must be an integer between 1"),
    (lambda a: a.task(name="t", queue="q\x00")(lambda: None), "queue name contains a NUL character"),
    (lambda a: a.task(name="t", timeout=float("inf"))(lambda: None), "timeout must be a positive number"),
    (lambda a: App(dsn="postgresql://x@127.0.0.1/x", schema="s" * 59), "at most 55 characters"),
    (lambda a: App(dsn="postgresql://x@127.0.0.1/x", max_payload_bytes=True), "max_payload_bytes must be an integer"),
    (lambda a: a.periodic("0 0 31 2 *", name="never")(lambda: None), "'0 0 31 2 *' never fires"),
    (lambda a: a.periodic("* * * * *", name="m", max_waiting=0)(lambda: None), "max_waiting must be an integer >= 1"),
])
def test_bad_configuration_is_refused_with_one_line(call, message):
    app = App(dsn="postgresql://x@127.0.0.1/x")
    with pytest.raises(ConfigError) as err:
        call(app)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_longest_schema_name_allowed_can_enqueue_and_be_woken(server_dsn):
    """55 characters: its channels (<schema>_control) are still identifiers."""
    import uuid

    from pgsteady import notifications
    from pgsteady.migrations import migrate

    schema = "s" * 55
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        from pgsteady.database import with_dbname

        dsn = with_dbname(server_dsn, name)
        migrate(dsn, schema=schema)
        app = App(dsn=dsn, schema=schema)
        _register(app)
        with psycopg.connect(dsn, autocommit=True) as listener:
            listener.execute(f'LISTEN "{notifications.jobs_channel(schema)}"')
            app.enqueue("import_post", {"post_id": 1})
            note = next(listener.notifies(timeout=10))
        assert notifications.decode(schema, note.channel, note.payload) == notifications.JobsAvailable("default")
        app.close()
    finally:
        with psycopg.connect(server_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_enqueue_async_writes_through_the_callers_async_transaction(app, dsn):
    _register(app)

    async def go() -> list:
        async with await psycopg.AsyncConnection.connect(dsn) as conn:
            ref = await app.enqueue_async("import_post", {"post_id": 1}, conn=conn)
            many = await app.enqueue_many_async([("import_post", {"post_id": i}) for i in range(150)], conn=conn)
            assert _count(dsn) == 0  # not committed yet
            await conn.commit()
        own = await app.enqueue_async("import_post", {"post_id": 2}, key="k")
        again = await app.tasks["import_post"].configure(key="k").enqueue_async(post_id=2)
        await app.aclose()
        return [ref, *many, own, again]

    refs = asyncio.run(go())
    assert _count(dsn) == 152 and refs[-1].id == refs[-2].id and not refs[-1].created
    with pytest.raises(ConfigError, match="AsyncConnection"):
        with psycopg.connect(dsn) as conn:
            asyncio.run(app.enqueue_async("import_post", {}, conn=conn))


def test_the_sync_writes_are_generated_from_the_async_source():
    """Async once: _writes_sync.py is tools/unasync.py's output for
    _writes_async.py; editing one without regenerating fails here (and in CI)."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, str(root / "tools" / "unasync.py"), "--check"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_no_loaded_query_carries_a_comment():
    """Comments stay in the .sql files; what is sent has none (a %(x)s in a
    comment would become a placeholder), in both query folders."""
    from pgsteady.indexes.queries import QUERIES
    from pgsteady.queries import Queries, _raw, parse

    q = Queries("pgsteady")
    bodies = [getattr(q, n) for n in _raw() if not n.startswith("_")] + list(QUERIES.values())
    assert len(bodies) > 100
    for body in bodies:
        assert "--" not in body and "/*" not in body, body[:200]
    assert parse("-- name: a\nSELECT 1 -- %(limit)s here\n-- %(x)s\n, '--kept' AS b;") == {"a": "SELECT 1\n, '--kept' AS b"}


def test_the_jobs_trigger_notifies_the_channel_the_protocol_declares(app, dsn):
    from pgsteady import notifications

    _register(app)
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f'LISTEN "{notifications.jobs_channel("pgsteady")}"')
        app.enqueue("import_post", {"post_id": 1}, queue="mail")
        note = next(listener.notifies(timeout=10))
    assert notifications.decode("pgsteady", note.channel, note.payload) == notifications.JobsAvailable("mail")
    assert notifications.decode("pgsteady", "pgsteady_control", "12; DROP") is None
    assert notifications.decode("pgsteady", "pgsteady_control", "cancel:99999999999999999999") is None


def test_misspelt_options_get_a_did_you_mean(app):
    _register(app)
    with pytest.raises(ConfigError, match=r"a job: unknown option 'priorty'; did you mean 'priority'\?"):
        app.enqueue_many([{"task": "import_post", "args": {}, "priorty": 1}])
    with pytest.raises(ConfigError, match=r"periodic: unknown option 'max_attempt'; did you mean 'max_attempts'\?"):
        app.periodic("* * * * *", max_attempt=3)


def test_the_sync_enqueue_on_an_event_loop_says_to_use_the_async_one(app, dsn, caplog):
    _register(app)

    async def from_async_code() -> None:
        app.enqueue("import_post", {"post_id": 1})
        app.enqueue("import_post", {"post_id": 2})

    with caplog.at_level("WARNING", logger="pgsteady"):
        asyncio.run(from_async_code())
    warned = [r.getMessage() for r in caplog.records if "enqueue_async" in r.getMessage()]
    assert len(warned) == 1 and _count(dsn) == 2
