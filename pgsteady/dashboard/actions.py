"""The actions (POST): every state change, each refused without the CSRF
token, refused in read-only mode, and recorded with who and from where.

Each action calls a domain function (pgsteady.jobs, pgsteady.queues,
pgsteady.schedule_admin) and redirects back with a one-line message; bad
input is a 400 page that says what is wrong.
"""

from __future__ import annotations

from typing import Callable
from urllib.parse import parse_qs, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .. import jobs as jobs_api
from .. import queues, schedule_admin
from ..errors import ConfigError, InvalidJobState, JobNotFound
from . import reads
from .app import Dashboard
from .pages import _job_id
from .security import csrf_ok, safe_back

BULK_LIMIT = 1000
BULK_SCAN = 500_000  # an explicit bulk action may look further back than a page


async def form(request: Request) -> dict[str, str]:
    """The urlencoded form (the only kind the dashboard's forms send), one value per field."""
    raw = await request.body()
    if not raw:
        return {}
    ctype = request.headers.get("content-type", "").split(";")[0].strip()
    if ctype != "application/x-www-form-urlencoded":
        raise HTTPException(415, "send the form as application/x-www-form-urlencoded")
    try:
        body = raw.decode("utf-8")
        fields = parse_qs(body, keep_blank_values=True, strict_parsing=bool(body), max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise HTTPException(400, "the form could not be read (malformed or not UTF-8)") from None
    return {k: v[-1] for k, v in fields.items()}


def routes(dash: Dashboard) -> list[Route]:
    def action(fn: Callable[[Request, dict[str, str]], str | Response], *, login: bool = False):
        async def endpoint(request: Request) -> Response:
            data = await form(request)
            if not csrf_ok(request.session, data.get("csrf")):
                raise HTTPException(403, "this form is stale or did not come from this dashboard (no valid CSRF "
                                         "token); reload the page and try again")
            if dash.config.read_only and not login:
                raise HTTPException(403, "this dashboard is read-only (--read-only)")
            result = await run_in_threadpool(fn, request, data)
            if isinstance(result, Response):
                return result
            request.session["flash"] = result
            return dash.redirect(request, safe_back(data.get("back")))
        return endpoint

    def retry_job(request: Request, data: dict[str, str]) -> str:
        job_id = _job_id(request.path_params["job_id"])
        with dash.conn() as conn:
            jobs_api.retry(conn, dash.q, job_id, actor=dash.actor(request))
        return f"job {job_id} will run again"

    def cancel_job(request: Request, data: dict[str, str]) -> str:
        job_id = _job_id(request.path_params["job_id"])
        with dash.conn() as conn:
            outcome = jobs_api.cancel(conn, dash.q, job_id, actor=dash.actor(request))
        return f"job {job_id}: {outcome}"

    def retry_matching(request: Request, data: dict[str, str]) -> Response | str:
        try:
            f = reads.JobFilter.parse({k: v for k, v in data.items() if k not in ("csrf", "confirm", "back")})
        except reads.BadFilter as exc:
            raise HTTPException(400, f"bad filter: {exc}") from None
        f = reads.JobFilter(**{**f.__dict__, "state": "failed", "before": None})
        with dash.conn() as conn:
            page = reads.jobs(conn, dash.q, f, limit=BULK_LIMIT, scan=BULK_SCAN)
            if data.get("confirm") != "yes":
                return dash.render(request, "confirm.html", f=f, count=len(page.rows), more=page.next_before is not None,
                                   limit=BULK_LIMIT)
            done = failed = 0
            for row in page.rows:
                try:
                    jobs_api.retry(conn, dash.q, row.id, actor=dash.actor(request))
                    done += 1
                except (InvalidJobState, JobNotFound):
                    failed += 1
        request.session["flash"] = (f"{done} failed job(s) will run again" + (f"; {failed} could not be retried"
                                    if failed else "") + ("; more may match: run it again" if page.next_before or page.scanned_to else ""))
        return dash.redirect(request, "/jobs?" + urlencode(f.query(before=None)))

    def queue_pause(request: Request, data: dict[str, str]) -> str:
        queue = request.path_params["queue"]
        with dash.conn() as conn:
            queues.pause(conn, dash.q, queue, actor=dash.actor(request))
        return f"queue {queue} paused: running jobs finish, no new ones start"

    def queue_resume(request: Request, data: dict[str, str]) -> str:
        queue = request.path_params["queue"]
        with dash.conn() as conn:
            queues.resume(conn, dash.q, queue, actor=dash.actor(request))
        return f"queue {queue} resumed"

    def queue_limits(request: Request, data: dict[str, str]) -> str:
        queue = request.path_params["queue"]
        limits = {name: _positive(name, data.get(name, "")) for name in ("max_running", "max_per_second")}
        with dash.conn() as conn:
            queues.set_limits(conn, dash.q, queue, actor=dash.actor(request), **limits)
        return f"queue {queue}: limits saved"

    def schedule(verb: str) -> Callable[[Request, dict[str, str]], str]:
        def run(request: Request, data: dict[str, str]) -> str:
            name = request.path_params["name"]
            with dash.conn() as conn:
                if verb == "run":
                    job_id = schedule_admin.run_now(conn, dash.q, name, actor=dash.actor(request))
                    return f"schedule {name}: job {job_id} enqueued"
                getattr(schedule_admin, verb)(conn, dash.q, name)
            return f"schedule {name} {verb}d"
        return run

    def login(request: Request, data: dict[str, str]) -> Response:
        auth = dash.config.auth
        if not auth.required or not auth.accepts(data.get("password", "")):
            return dash.render(request, "login.html", status=401, failed=True)
        request.session.clear()  # a new session (and a new CSRF token) for the logged-in user
        request.session["user"] = auth.user
        return dash.redirect(request, "/")

    def logout(request: Request, data: dict[str, str]) -> Response:
        request.session.clear()
        return dash.redirect(request, "/login" if dash.config.auth.required else "/")

    return [
        Route("/jobs/retry-failed", action(retry_matching), methods=["POST"]),
        Route("/jobs/{job_id}/retry", action(retry_job), methods=["POST"]),
        Route("/jobs/{job_id}/cancel", action(cancel_job), methods=["POST"]),
        Route("/queues/{queue:path}/pause", action(queue_pause), methods=["POST"]),
        Route("/queues/{queue:path}/resume", action(queue_resume), methods=["POST"]),
        Route("/queues/{queue:path}/limits", action(queue_limits), methods=["POST"]),
        Route("/schedules/{name:path}/pause", action(schedule("pause")), methods=["POST"]),
        Route("/schedules/{name:path}/resume", action(schedule("resume")), methods=["POST"]),
        Route("/schedules/{name:path}/run", action(schedule("run")), methods=["POST"]),
        Route("/login", action(login, login=True), methods=["POST"]),
        Route("/logout", action(logout, login=True), methods=["POST"]),
    ]


def _positive(name: str, raw: str) -> int | None:
    raw = raw.strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ConfigError(f"{name} must be a positive whole number or empty (no limit); got {raw[:20]!r}")
    return int(raw)
