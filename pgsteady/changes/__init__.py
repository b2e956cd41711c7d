"""Index changes as reviewed, measured, repeatable work.

A change file (``files``) names one CREATE, DROP or REINDEX of an index,
CONCURRENTLY, with its owner, reason, expected result and rollback. Its
steps, each recorded (``record``) and run in order by ``steps.Session``:

    lint      refuse what would hurt (lint)
    plan      capture current behaviour: table, indexes, EXPLAIN ANALYZE (measure)
    rehearse  apply on a copy of the data, compare, drop the copy (rehearse)
    apply     the build, a durable job on the maintenance queue (build, tasks)
    verify    rerun the queries, watch, give a verdict (verify)
    rollback  the rollback, run the same way as the build

The SQL of the change is read with PostgreSQL's parser (statements), and
names are resolved in the catalogue once (targets).

A change file's DDL may also be a whole schema migration (several
statements of any kind): ``migration_session`` runs the same steps with the
migration rule table (``migration_rules`` and its families), a rehearsal
that measures each statement's locks and rewrites (``migration_rehearse``,
``locks``) and a job that applies it statement by statement
(``migration_apply``). ``migration_lint`` also lints a plain .sql file.
"""

from __future__ import annotations

from .build import QUEUE, TASK
from .files import ChangeFile, ChangeFileError, load
from .lint import RULES, lint
from .steps import ChangeFailed, ChangeRefused, Session
from .tasks import register

__all__ = ["ChangeFile", "ChangeFileError", "ChangeFailed", "ChangeRefused", "QUEUE", "RULES", "Session", "TASK",
           "lint", "load", "register"]
