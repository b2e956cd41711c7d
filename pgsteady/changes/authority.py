"""Who may make the build job run DDL: only a recorded, linted change step.

``pgsteady.build_index`` is an ordinary task on the maintenance queue, so
anybody who can enqueue a job (a JSONL line, ``app.enqueue``) can ask for
it. The job's arguments are therefore never the authority. An attempt runs
only when:

1. a change step names this job (written in the transaction that enqueued
   it, by ``change apply`` / ``change rollback``), is an apply or a
   rollback, and is still open;
2. the statement is the one in the change record (the change's DDL, or its
   rollback), word for word;
3. the change was linted without a refusal (for an apply: this content of
   the change file);
4. the statement passes lint again now, against the catalogue as it is.

Anything else ends the job at once (``Discard``) without touching a table.
Writing a change step needs write privileges on pgsteady's own tables; the
worker role of ``pgsteady security roles`` holds them, an enqueue-only role
does not need to.
"""

from __future__ import annotations

from dataclasses import dataclass
import psycopg

from ..queries import Queries
from ..tasks import Discard
from .lint import recheck
from .targets import row, rows

TASK = "pgsteady.build_index"


class Refused(Discard):
    """A build job that no recorded, linted change step stands behind (``step_id``: the open step it
    named, closed as failed by the task)."""

    def __init__(self, message: str, step_id: int | None = None) -> None:
        super().__init__(message)
        self.step_id = step_id


@dataclass
class Authorised:
    step_id: int
    step: str
    change_id: str
    statement: str


def authorise(conn: psycopg.Connection, q: Queries, job_id: int, asked: str | None) -> Authorised:
    step = row(conn, q.step_of_job, {"job_id": job_id})
    if step is None:
        raise Refused(f"refused: job {job_id} is not a step of a recorded change; index DDL runs only "
                      "through `pgsteady change apply` (or `change rollback`) of a linted change file")
    if step["step"] not in ("apply", "rollback") or step["status"] not in ("queued", "running"):
        raise Refused(f"refused: change step {step['id']} is a {step['step']} step, {step['status']}; "
                      "nothing for a build job to run")
    open_step = step["id"]
    change = row(conn, q.get_change, {"id": step["change_id"]})
    statement = change["statement"] if step["step"] == "apply" else change["rollback"]
    if not statement or asked != statement:
        raise Refused(f"refused: the job's statement is not the {step['step']} statement recorded for change "
                      f"{change['id']}; rerun `pgsteady change {step['step']}` on the change file", open_step)
    linted = [s for s in rows(conn, q.change_steps, {"change_id": change["id"]})
              if s["step"] == "lint" and s["status"] == "done"
              and (step["step"] == "rollback" or s["file_sha"] == step["file_sha"])]
    if not linted:
        raise Refused(f"refused: change {change['id']} has no lint that passed for this version of the "
                      "file; run `pgsteady change lint` on it", open_step)
    checked = recheck(statement, conn, q)
    if checked.refused:
        rules = "; ".join(f"{f.rule}: {f.message}" for f in checked.findings if f.severity == "refuse")
        raise Refused(f"refused: lint refuses the {step['step']} statement now: {rules}", open_step)
    return Authorised(step["id"], step["step"], change["id"], statement)
