"""The App the change tests run in `pgsteady worker --queues maintenance`
processes: no tasks of its own; the worker command registers pgsteady's
build and migration tasks on it because it serves the maintenance queue."""

from __future__ import annotations

from pgsteady import App

app = App(release="changes-test")
