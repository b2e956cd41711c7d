"""The App of the cron process test: one schedule, every second."""

from __future__ import annotations

from pgsteady import App

app = App(release="cron-test")


@app.periodic("* * * * * *", name="every_second", on_missed="all")
def every_second() -> None:
    """A cron event every second; the test counts the jobs."""
