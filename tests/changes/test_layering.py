"""The job core does not depend on the change workflow: the dependency runs one way."""

from __future__ import annotations

import subprocess
import sys

from ..helpers import ROOT


def test_importing_pgsteady_and_creating_an_app_imports_neither_the_change_workflow_nor_pglast():
    code = ("import sys, pgsteady\n"
            "app = pgsteady.App(dsn='postgresql://nobody@127.0.0.1:1/none')\n"
            "assert 'pgsteady.build_index' not in app.tasks, app.tasks\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'pglast' or m.startswith('pgsteady.changes'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", out.stdout


def test_the_change_workflow_registers_the_build_task_where_builds_run():
    from pgsteady import App
    from pgsteady.changes import TASK, register
    from pgsteady.changes.tasks import serves_builds

    app = App(dsn="postgresql://nobody@127.0.0.1:1/none")
    register(app)
    register(app)  # once
    assert app.tasks[TASK].queue == "maintenance"
    assert serves_builds(None) and serves_builds(["default", "maintenance"]) and not serves_builds(["mail"])
