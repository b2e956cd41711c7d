"""`pgsteady demo`: the field note's day on a content site behind a CDN.

The walk (day.py) imports a feed through the job system and kills its worker
halfway, runs a cron event and a retried mail, takes the field note's index
change through the whole workflow while page views keep arriving, and ends
with the four questions of `status`. Every step checks what it claims; the
demo's exit code says whether every claim held.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from .walk import Day


def default_folder() -> Path:
    from ..embedded import default_home

    return default_home() / "demo"


def run(*, dsn: str, schema: str, folder: Path | None = None, quick: bool = False,
        console: Console | None = None) -> Day:
    """Walk the day on the database at ``dsn``; returns the Day with every claim."""
    from . import day as steps
    from .tasks import app

    app.configure(dsn=dsn, schema=schema)
    folder = folder or default_folder()
    folder.mkdir(parents=True, exist_ok=True)
    walk = Day(dsn=dsn, schema=schema, folder=folder, quick=quick, console=console or Console(),
               stamp=steps.stamp())
    try:
        walk.walk(steps.STEPS)
    finally:
        worker = walk.state.pop("worker", None)
        if worker is not None:
            worker.stop()
        app.close()
    return walk
