"""The pages (GET): each answers one question in its first screenful.

Every page reads through the domain modules: the Overview is
``monitoring.status.collect`` (the same questions as `pgsteady status`),
Queues ``queues``, Schedules ``schedule_admin``, Indexes ``indexes.check``
(the same checks as `pgsteady indexes check`), Changes the change record.
"""

from __future__ import annotations

import time
from datetime import timedelta

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .. import jobs as jobs_api
from .. import queues, schedule_admin
from ..errors import JobNotFound
from ..jobs import STATES
from ..monitoring import deploys
from ..monitoring import snapshot as snapshots
from ..monitoring.questions import QUESTIONS, Thresholds, live_workers, worker_alive
from ..monitoring.status import collect
from . import charts, reads
from .app import Dashboard

INDEX_REPORT_SECONDS = 60.0


def routes(dash: Dashboard) -> list[Route]:
    # Deploy comparisons that can no longer change (deploys.settled): each
    # reads two hours of per-minute counters, tens of milliseconds at scale,
    # so the Overview (the last mark) and Deploys (twenty) keep them here and
    # compare only the marks still inside their window.
    settled: dict[tuple, dict] = {}

    def overview(request: Request) -> Response:
        with dash.conn() as conn:
            status = collect(conn, dash.q.schema, settled_cache=settled)
            snap = status.snapshot
            hour = day = None
            if snap is not None and snap.schema_current:
                hour = charts.charts(reads.series(conn, dash.q, until=snap.until, span=timedelta(hours=1)))
                day = charts.charts(reads.series(conn, dash.q, until=snap.until, span=timedelta(hours=24),
                                                  step=reads.DAY_STEP))
        return dash.render(request, "overview.html", status=200, s=status, sections=status.sections,
                           questions=QUESTIONS, answers=status.answers, hour=hour, day=day,
                           day_step=reads.DAY_STEP, live=True)

    def queues_page(request: Request) -> Response:
        with dash.conn() as conn:
            rows = queues.list_queues(conn, dash.q)
            histories = {r.queue: queues.history(conn, dash.q, r.queue, limit=3) for r in rows[:50]}
        th = Thresholds()
        from ..monitoring.questions import queue_slow
        return dash.render(request, "queues.html", rows=rows, histories=histories,
                           slow={r.queue for r in rows if queue_slow(r, th)}, live=True)

    def jobs_page(request: Request) -> Response:
        try:
            f = reads.JobFilter.parse(dict(request.query_params))
        except reads.BadFilter as exc:
            raise HTTPException(400, f"bad filter: {exc}") from None
        with dash.conn() as conn:
            page = reads.jobs(conn, dash.q, f)
        return dash.render(request, "jobs.html", f=f, page=page, states=STATES, windows=list(reads.WINDOWS))

    def job_page(request: Request) -> Response:
        job_id = _job_id(request.path_params["job_id"])
        with dash.conn() as conn:
            try:
                job = jobs_api.get_job(conn, dash.q, job_id)
            except JobNotFound:
                raise HTTPException(404, f"no job with id {job_id}; it may have been pruned") from None
        job["args"] = dash.masked(job["args"])
        job["checkpoint"] = dash.masked(job["checkpoint"])
        for e in job["events"]:
            e["data"] = dash.masked(e["data"])
        return dash.render(request, "job.html", job=job, live=job["state"] in ("waiting", "running"))

    def workers_page(request: Request) -> Response:
        with dash.conn() as conn:
            snap = snapshots.read(conn, dash.q, windows=False, rule=None)
            running = reads.running_by_worker(conn, dash.q)
        th = Thresholds()
        alive = {w.id: worker_alive(w, th) for w in snap.workers}
        return dash.render(request, "workers.html", rows=snap.workers, running=running, alive=alive,
                           leader=snap.leader(),
                           live_count=len(live_workers(snap, th)), live=True)

    def schedules_page(request: Request) -> Response:
        with dash.conn() as conn:
            rows = schedule_admin.list_schedules(conn, dash.q)
        return dash.render(request, "schedules.html", rows=rows, live=True)

    cache: dict[str, tuple[float, object]] = {}

    def indexes_page(request: Request) -> Response:
        # The checks read the whole catalogue (seconds with thousands of
        # indexes), so their report is kept for INDEX_REPORT_SECONDS; builds
        # in progress are read every time.
        from ..indexes import runner
        fresh = request.query_params.get("fresh") == "1"
        with dash.conn() as conn:
            checked_at, report = cache.get("report", (0.0, None))
            if report is None or fresh or time.monotonic() - checked_at > INDEX_REPORT_SECONDS:
                report = runner.check(conn)
                checked_at = time.monotonic()
                cache["report"] = (checked_at, report)
            builds = reads.index_builds(conn)
        return dash.render(request, "indexes.html", report=report, builds=builds,
                           age=time.monotonic() - checked_at, live=bool(builds))

    def changes_page(request: Request) -> Response:
        with dash.conn() as conn:
            rows = reads.changes(conn, dash.q)
        return dash.render(request, "changes.html", rows=rows, live=True)

    def change_page(request: Request) -> Response:
        from ..changes import progress, record
        change_id = request.path_params["change_id"]
        if len(change_id) > 200:
            raise HTTPException(400, "a change id is at most 200 characters")
        with dash.conn() as conn:
            try:
                rec = record.get(conn, dash.q, change_id)
            except record.ChangeNotFound as exc:
                raise HTTPException(404, str(exc)) from None
            running = [(s, progress.snapshot(conn, dash.q, s["job_id"], s["id"])) for s in rec["steps"]
                       if s["status"] in ("queued", "running") and s["job_id"] is not None]
        return dash.render(request, "change.html", c=rec, running=running, live=bool(running))

    def deploys_page(request: Request) -> Response:
        with dash.conn() as conn:
            marks = deploys.list_deploys(conn, dash.q, limit=20)
            until = snapshots.read(conn, dash.q, windows=False, rule=None).until
            compared = [(m, deploys.compare(conn, dash.q, until=until, deploy_id=m["id"], settled_cache=settled))
                        for m in marks] if until is not None else []
        listed = {m["id"] for m in marks}
        for key in [k for k in settled if k[0] not in listed]:
            settled.pop(key, None)
        return dash.render(request, "deploys.html", compared=compared)

    def login_page(request: Request) -> Response:
        if not dash.config.auth.required:
            return dash.redirect(request, "/")
        return dash.render(request, "login.html", failed=False)

    def health(request: Request) -> Response:
        return JSONResponse({"ok": True})

    return [
        Route("/", overview, name="overview"),
        Route("/queues", queues_page, name="queues"),
        Route("/jobs", jobs_page, name="jobs"),
        Route("/jobs/{job_id}", job_page, name="job"),
        Route("/workers", workers_page, name="workers"),
        Route("/schedules", schedules_page, name="schedules"),
        Route("/indexes", indexes_page, name="indexes"),
        Route("/changes", changes_page, name="changes"),
        Route("/changes/{change_id}", change_page, name="change"),
        Route("/deploys", deploys_page, name="deploys"),
        Route("/login", login_page, name="login"),
        Route("/healthz", health, name="healthz"),
    ]


def _job_id(raw: str) -> int:
    if not raw.isdigit() or not 0 < int(raw) < 2**63:
        raise HTTPException(404, f"no job with id {raw[:40]!r}: a job id is a positive whole number")
    return int(raw)
