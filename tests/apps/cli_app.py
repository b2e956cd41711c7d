"""An App for the command-line tests: a task that logs with fields, one that
fails its first attempt, and one named by default (module.function)."""

from __future__ import annotations

from pgsteady import App, Retry

app = App(release="cli-test")


@app.task(name="logs")
def logs(ctx, post_id: int) -> None:
    ctx.log("imported", post_id=post_id, url="https://example.test/p", password="hunter2-in-a-log")


@app.task(name="flaky", retry=Retry(base=0.01, cap=0.05))
def flaky(ctx) -> None:
    if ctx.attempt == 1:
        raise RuntimeError("first attempt fails on purpose")


@app.task
def import_post(post_id: int) -> None:
    pass
