"""pgsteady's own task, ``pgsteady.build_index``, registered where builds run.

The job core never imports this package (the dependency runs one way: the
change workflow uses the jobs). ``pgsteady worker`` registers the task on
its App whenever it serves the maintenance queue, and ``change apply``
registers it on the App it enqueues with; a worker started from Python
calls :func:`register` itself::

    from pgsteady.changes import register
    register(app)
    run_worker(app, queues=["maintenance"])

Registering the task does not let anybody run DDL with it: an attempt runs
only for a recorded, linted change step and re-checks its statement
(``build.authorise``).
"""

from __future__ import annotations

from typing import Any

from ..tasks import Discard, Retry
from .build import QUEUE, TASK, Build, finish
from .targets import one_line

# Lock timeouts are retried inside an attempt; the job's own retries are for
# what an attempt cannot handle itself: a killed worker, a lost connection,
# another build on the same table that outlives wait_for_other_build.
# (Call site for the one retry policy of issue 11 once it exists.)
JOB_RETRY = Retry(base=2, cap=120, jitter=0.25)
MAX_ATTEMPTS = 10


def register(app: Any) -> None:
    """Register ``pgsteady.build_index`` and ``pgsteady.run_migration`` on ``app`` (once)."""
    from .migration_apply import register as register_migration

    register_migration(app, QUEUE, JOB_RETRY, MAX_ATTEMPTS)
    if TASK in app.tasks:
        return

    @app.task(name=TASK, queue=QUEUE, max_attempts=MAX_ATTEMPTS, retry=JOB_RETRY)
    def build_index(ctx, **args: Any) -> dict[str, Any]:
        """Run one recorded CREATE/DROP/REINDEX INDEX CONCURRENTLY step safely (pgsteady/changes/build.py)."""
        build = Build(app, ctx, args)
        try:
            return build.run()
        except Exception as exc:
            # The job ends here (no retry left, or Discard): the step and the change say so now,
            # not whenever a command next looks at the job.
            if isinstance(exc, Discard) or ctx.attempt >= ctx.max_attempts:
                step_id = build.step_id if build.step_id is not None else getattr(exc, "step_id", None)
                finish(app, step_id, "failed", one_line(exc), {"timeline": build.timeline})
            raise


def serves_builds(queues: list[str] | None) -> bool:
    """Whether a worker taking ``queues`` (None: all) takes build jobs."""
    return queues is None or QUEUE in queues
