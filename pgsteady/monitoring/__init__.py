"""Monitoring: is it up, is it slow, are jobs failing, did the deploy change anything.

- ``counters.CounterPass``: the maintenance service that keeps per-minute
  counters, so nothing here ever scans the job history;
- ``snapshot.read``: one typed read of everything the questions ask about;
- ``questions.QUESTIONS``: the status questions, each a function over a
  snapshot (the one place to change what "down", "slow" or "failing" means);
- ``status.check`` / ``status.collect``: the answers behind `pgsteady status`;
- ``deploys``: deploy marks and the before/after verdict, with its rule;
- ``metrics`` and ``server.MetricsApp``: Prometheus metrics, /healthz, /readyz
  (import them from their modules: prometheus-client is loaded only there, so
  `pgsteady status` starts fast);
- ``logs``: JSON logs with the job's id, task, attempt and release on every line.
"""

from .counters import CounterPass
from .counts import BOUNDS, Counts
from .deploys import Rule
from .logs import JobContextFilter, JsonFormatter, TextFormatter, job_context
from .questions import QUESTIONS, Thresholds
from .status import Status, check, collect

__all__ = ["BOUNDS", "CounterPass", "Counts", "JobContextFilter", "JsonFormatter", "QUESTIONS", "Rule", "Status",
           "TextFormatter", "Thresholds", "check", "collect", "job_context"]
