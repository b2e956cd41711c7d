"""Monitoring: is it up, is it slow, are jobs failing, did the deploy change anything.

- ``counters.CounterPass``: the maintenance service that keeps per-minute
  counters, so nothing here ever scans the job history;
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
from .status import Status, Thresholds, check, collect

__all__ = ["BOUNDS", "CounterPass", "Counts", "JobContextFilter", "JsonFormatter", "Rule", "Status",
           "TextFormatter", "Thresholds", "check", "collect", "job_context"]
