"""The App the change tests run in `pgsteady worker --queues maintenance`
processes: no tasks of its own, only pgsteady's built-in build task."""

from __future__ import annotations

from pgsteady import App

app = App(release="changes-test")
