"""pgsteady: calm background jobs and safe index changes for PostgreSQL.

The public API is what this module exports; everything else is internal.
"""

from .app import App, JobRef
from .errors import PgsteadyError
from .retries import Retry
from .tasks import Cancelled, Context, Discard, RetryIn, Task
from .worker import Worker, run_worker

__all__ = ["App", "Cancelled", "Context", "Discard", "JobRef", "PgsteadyError", "Retry", "RetryIn", "Task", "Worker", "run_worker"]
