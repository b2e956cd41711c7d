"""pgsteady's own tasks, registered on every App so that any worker with
``--queues maintenance`` can run an index build."""

from __future__ import annotations

from typing import Any

from ..tasks import Retry
from .build import QUEUE, TASK, Build


def register_builtin(app: Any) -> None:
    """Register ``pgsteady.build_index`` on ``app`` (once)."""
    if TASK in app.tasks:
        return

    # Lock timeouts are retried inside an attempt; the job's own retries are for
    # what an attempt cannot handle itself: a killed worker, a lost connection,
    # another build on the same table that outlives wait_for_other_build.
    @app.task(name=TASK, queue=QUEUE, max_attempts=10, retry=Retry(base=2, cap=120, jitter=0.25))
    def build_index(ctx, **args: Any) -> dict[str, Any]:
        """Run one CREATE/DROP/REINDEX INDEX CONCURRENTLY safely (see pgsteady/changes/build.py)."""
        return Build(app, ctx, args).run()
