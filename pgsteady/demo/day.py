"""The steps of the demo's day, in the order the field note tells them.

Each step is a function of the `Day` (walk.py). They use pgsteady the way a
user does: the App's enqueue, real `pgsteady worker` processes, the change
workflow's Session, the health checks, status. The only SQL here is the demo
site's own (site.sql) and two catalogue probes that check a claim.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from psycopg.conninfo import conninfo_to_dict, make_conninfo
from rich.markup import escape

from ..changes import progress as build_progress
from ..changes.steps import Session
from ..database import connect, describe
from ..jobs import get_job
from ..migrations import migrate
from . import site, tasks
from .fleet import LEASE, WorkerProcess
from .walk import Day, Step

SCHEMA_FILE = "pgsteady/demo/site.sql"


# -- 1 ---------------------------------------------------------------------------

def the_site(day: Day) -> None:
    migrate(day.dsn, day.schema)
    n, posts = day.sizes.events, day.sizes.posts
    started = time.monotonic()
    with connect(day.dsn, autocommit=True) as conn:
        site.create(conn)
        with day.progress("writing a month of page views", total=n) as update:
            site.fill_history(conn, n, posts, on_progress=lambda done: update(completed=done))
        count = conn.execute(site.queries().count_events).fetchone()[0]
    day.claim(f"{count:,} page views over the last 30 days in demo_site.events, written in "
              f"{time.monotonic() - started:.1f} s", count == n, events=count)
    day.say("demo_site.posts will carry the field note's own meta: topic, tags, summary, scores, revision")
    day.look(f"psql: \\d demo_site.events   (the database: {describe(day.dsn)})")


# -- 2 ---------------------------------------------------------------------------

def the_import(day: Day) -> None:
    n = day.sizes.posts
    app = tasks.app
    feed = site.write_feed(day.folder / f"feed-{n}.jsonl", n)
    day.say(f"the partner's feed: {n:,} posts in {feed}")
    args = {"feed": str(feed), "total": n, "pace": day.sizes.pace}
    key = f"demo:{day.stamp}:import"
    ref = app.enqueue(tasks.import_feed.name, args, key=key)
    again = app.enqueue(tasks.import_feed.name, args, key=key)
    day.claim(f"the import is one job ({ref.id}); enqueuing it again with the same key made no second job",
              ref.created and not again.created and again.id == ref.id, job_id=ref.id)
    q = app.queries

    def checkpoint(conn) -> int:
        return int((get_job(conn, q, ref.id)["checkpoint"] or {}).get("position", 0))

    first = WorkerProcess(day.dsn, day.schema, day.folder / "worker-1.log")
    kill_at = n * 2 // 5
    with connect(day.dsn, autocommit=True) as conn:
        with day.progress(f"importing with worker 1 (pid {first.pid}); it will be killed near post {kill_at:,}",
                          total=n) as update:
            def far_enough():
                position = checkpoint(conn)
                update(completed=position)
                return position >= kill_at
            day.wait_for("the import to reach its first checkpoints", far_enough, timeout=120, every=0.05)
        first.kill()
        killed_at = time.monotonic()
        at_kill = checkpoint(conn)
        job = get_job(conn, q, ref.id)
        day.claim(f"worker 1 killed with SIGKILL; the last committed chunk ended at post {at_kill:,} of {n:,}",
                  0 < at_kill < n and job["state"] == "running", checkpoint_at_kill=at_kill)
        day.say(f"the job is still 'running' under worker 1's lease, which nobody renews now ({LEASE:g} s)")

        second = WorkerProcess(day.dsn, day.schema, day.folder / "worker-2.log")
        day.state["worker"] = second
        with day.progress(f"worker 2 (pid {second.pid}) rescues the job and resumes it", total=n) as update:
            def finished():
                job = get_job(conn, q, ref.id)
                update(completed=int((job["checkpoint"] or {}).get("position", 0)))
                return job if job["state"] in ("succeeded", "failed") else None
            job = day.wait_for("the import to finish", finished, timeout=180, every=0.1)
        rows, distinct = conn.execute(site.queries().count_posts).fetchone()
    rescued = [e for e in job["events"] if e["kind"] == "rescued"]
    starts = [e for e in job["events"] if e["message"] == "import starts"]
    resumed_from = (starts[-1]["data"] or {}).get("resume_from") if starts else None
    after = (rescued[0]["created_at"] - job["events"][0]["created_at"]).total_seconds() if rescued else None
    day.claim("the expired lease was rescued and the job ran again as attempt 2",
              bool(rescued) and job["attempt"] == 2 and job["state"] == "succeeded", attempts=job["attempt"])
    day.claim(f"attempt 2 resumed after the last committed chunk, at post {resumed_from or 0:,}",
              resumed_from == at_kill, resumed_from=resumed_from)
    day.claim(f"{rows:,} posts stored, {rows - distinct} duplicates: each post exactly once",
              rows == n and distinct == n, posts=rows, duplicates=rows - distinct)
    day.figure(rescue_seconds_after_kill=round(time.monotonic() - killed_at, 2), history_seconds=after)
    day.look(f"pgsteady jobs show {ref.id}     (its history: the rescue, both attempts, the log lines)")


# -- 3 ---------------------------------------------------------------------------

def cron_and_retries(day: Day) -> None:
    from ..schedule_admin import UnknownSchedule, resume

    app = tasks.app
    with connect(day.dsn, autocommit=True) as conn:
        with contextlib.suppress(UnknownSchedule):  # an earlier demo paused it at the end of its day
            resume(conn, app.queries, tasks.SITEMAP)
    since = datetime.now(timezone.utc)
    ref = app.enqueue(tasks.send_digest.name, {"week": "2026-W49"}, key=f"demo:{day.stamp}:digest")
    q = app.queries
    with connect(day.dsn, autocommit=True) as conn:
        with day.progress(f"waiting for the sitemap cron ({tasks.SITEMAP_CRON}) and the digest mail"):
            def both():
                sitemap = conn.execute(site.queries().latest_sitemap, {"since": since}).fetchone()
                job = get_job(conn, q, ref.id)
                return (sitemap, job) if sitemap and job["state"] in ("succeeded", "failed") else None
            (generated_at, urls), job = day.wait_for("the sitemap and the digest", both, timeout=60)
    day.claim(f"the sitemap cron fired on its schedule and listed {urls:,} posts", urls == day.sizes.posts,
              sitemap_urls=urls)
    errors = job["errors"] or []
    day.claim(f"the digest failed {len(errors)} times (the mail server timed out) and succeeded on attempt "
              f"{job['attempt']}; each failure is in its history", job["state"] == "succeeded" and len(errors) == 2,
              digest_attempts=job["attempt"])
    for e in errors:
        day.say(f"  attempt {e.get('attempt')}: {escape(str(e.get('error'))[:100])}")
    day.look(f"pgsteady jobs show {ref.id}")
    day.look("pgsteady schedules list")


# -- 4 ---------------------------------------------------------------------------

CHANGE = '''\
id = "{id}"
title = "Speed up the latest page views on the home page"
owner = "ana@site.example"
reason = """
The home page lists the latest page views. EXPLAIN shows a sequential scan
and a sort of every row of demo_site.events on every request, and the table
grows by the minute.
"""
ddl = "CREATE INDEX CONCURRENTLY idx_events_created_at ON demo_site.events (created_at DESC)"
files = ["{schema_file}", "{path}", "{backup}"]
watch = "{watch}s"

[build]
lock_timeout = "2s"
lock_retries = 5
retry_backoff = "1s"

[[queries]]
name = "latest_events"
sql = "SELECT id, post_id, created_at FROM demo_site.events ORDER BY created_at DESC LIMIT %(n)s"
params = {{ n = 50 }}
repeat = 5
expect_max_ms = 5
expect_index = "idx_events_created_at"
'''


class PageViews(threading.Thread):
    """Readers keep reading and page views keep being written during the build;
    this writes one every few milliseconds and keeps the slowest insert."""

    def __init__(self, dsn: str) -> None:
        super().__init__(daemon=True)
        self.dsn = dsn
        self.done = threading.Event()
        self.written = 0
        self.slowest = 0.0

    def run(self) -> None:
        insert = site.queries().insert_page_view
        with connect(self.dsn, autocommit=True) as conn:
            while not self.done.is_set():
                t = time.perf_counter()
                conn.execute(insert, {"post_id": 1 + self.written % 100, "path": "/"})
                self.slowest = max(self.slowest, time.perf_counter() - t)
                self.written += 1
                self.done.wait(0.005)

    def stop(self) -> None:
        self.done.set()
        self.join()


def _session(day: Day, path: Path, step: str) -> Session:
    return Session(day.dsn, day.schema, path, f"pgsteady change {step} {path}", app=tasks.app)


def _backup(day: Day, out: Path) -> Path:
    """pg_dump of the table's definition: what an index change could lose is
    the table's shape and its indexes, never rows."""
    from .. import embedded

    params = conninfo_to_dict(day.dsn)
    env = dict(os.environ)
    if params.pop("password", None) is not None:  # never on the command line
        env["PGPASSWORD"] = conninfo_to_dict(day.dsn)["password"]
    subprocess.run([str(embedded.bin_path("pg_dump")), "--schema-only", "--table", "demo_site.events",
                    "--file", str(out), "--dbname", make_conninfo(**params)],
                   env=env, check=True, capture_output=True, timeout=60)
    return out


def index_change(day: Day) -> None:
    from ..indexes import runner

    change_id = f"demo-{day.stamp}-events-created-at"
    folder = day.folder / "changes"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{change_id}.toml"
    path.write_text(CHANGE.format(id=change_id, schema_file=SCHEMA_FILE, path=path.name, backup=f"{change_id}.before.sql",
                                 watch=f"{day.sizes.watch:g}"))
    day.say(f"the change file: {path}")

    day.say("[bold]capture the current behaviour[/bold]")
    report = runner.check(day.dsn, schema="demo_site")
    day.say(f"indexes check on demo_site: {report.indexes_checked} indexes, {len(report.findings)} findings")
    with _session(day, path, "lint") as s:
        linted = s.lint()
    day.claim("lint passed: CONCURRENTLY, named, no duplicate or redundant index", not linted.refused)
    with _session(day, path, "plan") as s, day.progress("EXPLAIN ANALYZE of latest_events, 5 runs"):
        plan = s.plan()
    before = plan["queries"][0]
    day.claim(f"before: latest_events takes {before['median_ms']:.1f} ms (median), plan: "
              f"{' > '.join(line.strip().split('  ')[0] for line in before['plan_lines'][:3])}",
              not before["indexes"], before_ms=before["median_ms"])

    day.say("[bold]create a safe backup[/bold]")
    backup = _backup(day, folder / f"{change_id}.before.sql")
    day.claim(f"an index change rewrites no rows, so the backup is the table's definition and indexes: "
              f"{backup.name} (pg_dump --schema-only), beside the derived rollback in the change record",
              "CREATE TABLE demo_site.events" in backup.read_text(), backup=str(backup))

    day.say("[bold]test the smallest change, on a copy[/bold]")
    with _session(day, path, "rehearse") as s, day.progress("copying demo_site.events and building the index there"):
        rehearsal = s.rehearse()
    with connect(day.dsn, autocommit=True) as conn:
        leftovers = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'pgsteady_rehearsal%%'").fetchone()[0]
    day.claim(f"rehearsed on a copy of {rehearsal['copied_rows']:,} rows: the build took "
              f"{rehearsal['timings']['apply']:.2f} s there; the copy is gone", leftovers == 0,
              rehearsal_build_seconds=rehearsal["timings"]["apply"])

    day.say("[bold]build it for real, CONCURRENTLY, while page views keep arriving[/bold]")
    writer = PageViews(day.dsn)
    writer.start()
    log_from = day.state["worker"].log_size()
    try:
        with _session(day, path, "apply") as s:
            job_id, step_id, _ = s.apply()
            with day.progress(f"building idx_events_created_at (job {job_id}, worker 2)", total=None) as update:
                def show(snap: build_progress.Snapshot) -> None:
                    update(description=f"building idx_events_created_at: {snap.describe[:60]}",
                           completed=snap.done or 0, total=snap.total)
                last = build_progress.follow(s.conn, s.q, job_id, step_id, show, timeout=300)
    finally:
        writer.stop()
    day.claim(f"built by job {job_id} on the maintenance queue: {last.job_state}", last.job_state == "succeeded",
              build_job=job_id)
    day.claim(f"{writer.written:,} page views were written during the build; the slowest insert took "
              f"{writer.slowest * 1000:.0f} ms", writer.written > 0 and writer.slowest < 2.0,
              writes_during_build=writer.written, slowest_write_ms=round(writer.slowest * 1000, 1))

    from ..monitoring.deploys import mark

    with connect(day.dsn, autocommit=True) as conn:
        mark(conn, tasks.app.queries, f"demo-{day.stamp}", note="idx_events_created_at on demo_site.events")
    day.say(f"the release is marked as deploy demo-{day.stamp}, so `status` can say whether it changed anything")

    day.say("[bold]verify, and watch after the release[/bold]")
    with _session(day, path, "verify") as s, day.progress(f"verify: rerun the query, watch {day.sizes.watch:g} s",
                                                          total=None) as update:
        verified = s.verify(on_tick=lambda elapsed, total: update(description=f"watching {elapsed:.0f}/{total:.0f} s"))
    check = verified["checks"][0]
    day.claim(f"verify: {verified['verdict']}, latest_events {check.get('before_ms', 0):.1f} ms -> "
              f"{check['after_ms']:.2f} ms ({check.get('speedup')}x), using idx_events_created_at",
              verified["verdict"] == "improved", after_ms=check["after_ms"], speedup=check.get("speedup"))
    lines = day.state["worker"].log_lines(log_from)
    bad = [line for line in lines if " ERROR " in line or "Traceback" in line]
    day.claim(f"the worker's log since the release has no errors ({len(lines)} lines in "
              f"{day.state['worker'].log.name})", not bad, log_lines=len(lines))

    day.say("[bold]write the final note[/bold]")
    note = path.with_suffix(".md")
    text = note.read_text() if note.exists() else ""
    wanted = ("## Reason", "ana@site.example", "## Expected result", "## Actual result", "Rollback",
              "## Commands run", "## Files touched", SCHEMA_FILE)
    missing = [w for w in wanted if w not in text]
    day.claim(f"the note is beside the change file: {note.name} (reason, owner, expected and actual result, "
              "rollback, commands, files touched)", not missing, note=str(note))
    day.look(f"cat {note}")
    day.look(f"pgsteady change show {change_id}")


# -- 5 ---------------------------------------------------------------------------

def cache_rules(day: Day) -> None:
    from ..cache import evaluate, proxytest, rules as rules_file, template

    path = day.folder / "cache-rules.toml"
    path.write_text(template.template(path.name, "site.example"))
    rules = rules_file.load(path)
    findings, examples = evaluate.check(rules)
    wrong = [e for e in examples if not e.holds]
    day.claim(f"{len(rules.rules)} named rules (owner, reason, bypasses, expected result, rollback) and "
              f"{len(examples)} examples, every one decided as written: {path.name}",
              not findings and not wrong and examples, rules=len(rules.rules), examples=len(examples))
    day.look(f"pgsteady cache explain {path} /posts/hello-world --cookie sessionid=abc")
    missing = ("nginx" if proxytest.nginx_binary() is None else
               "its cache-purge module" if proxytest.purge_module() is None else None)
    if missing:
        day.say(f"[yellow]skipped[/yellow]: the examples on a real proxy and the purge jobs need nginx, and this "
                f"machine has no {missing} (apt-get install nginx libnginx-mod-http-cache-purge)")
        day.figure(nginx="skipped")
        return
    with day.progress("every example twice through a real nginx, counting the origin's hits"):
        runs = proxytest.run(rules)
    day.claim(f"on a real nginx all {len(runs)} examples behave as the rules say (cached: origin hit once; "
              "not cached: hit every time)", all(r.as_intended for r in runs), nginx_examples=len(runs))
    _purge_changed_pages(day, rules)


def _purge_changed_pages(day: Day, rules) -> None:
    """A post changes; its purge job is enqueued in the same transaction as the
    change, and the next reader's request reaches the origin."""
    import asyncio

    from ..app import App
    from ..cache import proxytest, purge
    from ..tasks import Retry
    from ..worker import Worker

    with connect(day.dsn, autocommit=True) as conn:
        slugs = [r[0] for r in conn.execute(site.queries().sitemap_rows).fetchmany(3)]
    pages = [f"/posts/{slug}" for slug in slugs]
    app = App(dsn=day.dsn, schema=day.schema, release="demo-day")
    try:
        with proxytest.Origin() as origin, proxytest.Nginx(rules, origin.port) as proxy:
            purger = purge.register(app, purge.Nginx(f"http://127.0.0.1:{proxy.port}", host="localhost"),
                                    retry=Retry(base=0.2, cap=1.0))
            for page in pages:
                proxy.request("GET", page)
            cached = [proxy.request("GET", page)[1].get("x-cache") for page in pages]
            hits = origin.hits
            with connect(day.dsn) as conn, conn.transaction():   # the content write and its purge commit together
                conn.execute(site.queries().revise_posts, {"slugs": slugs})
                ref = purger.enqueue(urls=pages, version=f"{day.stamp}-r2", conn=conn)
            with day.progress(f"purging {len(pages)} changed pages through nginx (job {ref.id})"):
                asyncio.run(Worker(app, queues=[purge.QUEUE], concurrency=2, lease=5, poll_interval=0.1)
                            .run(until_idle=True))
            after = [proxy.request("GET", page)[1].get("x-cache") for page in pages]
            state = get_job_state(day, ref.id)
        day.claim(f"{len(pages)} changed posts were cached ({', '.join(map(str, cached))}); their purge job "
                  f"{state}; the next reads reached the origin ({', '.join(map(str, after))})",
                  all(c == "HIT" for c in cached) and state == "succeeded" and all(a == "MISS" for a in after)
                  and origin.hits == hits + len(pages), purged=len(pages))
        day.look(f"pgsteady jobs show {ref.id}     (each PURGE and nginx's answer)")
    finally:
        app.close()


def get_job_state(day: Day, job_id: int) -> str:
    with connect(day.dsn, autocommit=True) as conn:
        return get_job(conn, tasks.app.queries, job_id)["state"]


# -- 6 ---------------------------------------------------------------------------

SECTIONS = (("up", "Is it up?"), ("slow", "Is it slow?"), ("failing", "Are jobs failing?"),
            ("deploy", "Did the last deployment change anything?"))


def end_of_day(day: Day) -> None:
    from ..monitoring import questions, status
    from ..schedule_admin import pause
    from ..security import runner as security

    q = tasks.app.queries
    with connect(day.dsn, autocommit=True) as conn:
        pause(conn, q, tasks.SITEMAP)  # a 2-second cron is the demo's, not something to leave running
    day.say("the demo's 2-second sitemap schedule is paused now (`pgsteady schedules resume demo.sitemap`)")
    result = status.check(day.dsn, day.schema)
    snap, th = result.snapshot, questions.Thresholds()
    for section, asked in SECTIONS:
        found = [f.text for question in questions.QUESTIONS if question.section == section
                 for f in question.ask(snap, th)] if snap is not None and snap.schema_current else []
        day.say(f"[bold]{asked}[/bold] " + ("; ".join(escape(t) for t in found) if found else "no finding"))
    day.claim(f"status answers the four questions: {result.health} "
              f"({len(result.reasons)} finding{'s' if len(result.reasons) != 1 else ''})",
              result.health in ("healthy", "degraded") and snap is not None, health=result.health)
    report = security.check(day.dsn, schema=day.schema, scan_processes=False)
    counts = report.counts()
    day.claim(f"the security checklist ran: {counts.get('pass', 0)} pass, {counts.get('warn', 0)} warn, "
              f"{counts.get('fail', 0)} fail (`pgsteady security check` for the evidence and each fix)",
              bool(report.results), security=counts)
    for r in [r for r in report.results if r.status == "fail"][:3]:
        day.say(f"  fail {escape(r.check)}: {escape(r.message)[:110]}")
    worker = day.state.pop("worker", None)
    if worker is not None:
        worker.stop()
    day.look("pgsteady status")
    day.look("pgsteady security check")
    day.look("pgsteady dashboard     (http://127.0.0.1:8188/: the same answers, the jobs, the change and its note)")


STEPS = [
    Step("The site", "A content site's tables and a month of page views: the history every later step works on.",
         the_site),
    Step("The import that stops halfway", "A feed imported in chunks through the job system; its worker is "
         "killed mid-import; another rescues it and resumes after the last committed chunk.", the_import),
    Step("Cron events and retries", "The sitemap on a schedule, and a mail that fails twice and is retried "
         "with backoff, every failure kept in the job's history.", cron_and_retries),
    Step("The field note's index change", "CREATE INDEX CONCURRENTLY idx_events_created_at ON events "
         "(created_at DESC): checked, planned, backed up, rehearsed on a copy, built while writes go on, "
         "verified, watched and written up.", index_change),
    Step("Cache rules behind the CDN", "Named rules with owners, bypasses and examples that are checked, proven "
         "on a real nginx, and purge jobs that reach readers with the new content.", cache_rules),
    Step("The end of the day", "The four questions: is it up, is it slow, are jobs failing, did the last "
         "deployment change anything.", end_of_day),
]


def stamp() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
