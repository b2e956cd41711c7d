"""The counters read back: outcome counts, run and wait histograms, percentiles.

The counter pass (counters.py) stores, per minute, how many attempts ended
each way and two cumulative histograms of the succeeded attempts: run time
(finished_at - started_at) and wait time (started_at - run_at, how long the
job was due before a worker took it). Sums over any window are plain column
sums, so a day of history costs a few thousand small rows, not a scan of jobs.

Percentiles are estimated from the buckets the way Prometheus'
histogram_quantile does it: find the bucket that holds the rank and
interpolate linearly inside it. They are bucket estimates, exact only to
within their bucket.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

# Upper bounds of the histogram buckets, in seconds, with a short name. This
# is the only list of them: the counter pass gets the bounds as a parameter
# and stores the counts as arrays (job_stats.run_le[i] counts attempts that
# ran at most SECONDS[i]), so adding a bucket is one line here. Rows counted
# before a change of the list keep the old bounds' meaning.
BOUNDS: tuple[tuple[str, float], ...] = (
    ("5ms", 0.005), ("10ms", 0.01), ("25ms", 0.025), ("50ms", 0.05), ("100ms", 0.1), ("250ms", 0.25),
    ("500ms", 0.5), ("1s", 1.0), ("2500ms", 2.5), ("5s", 5.0), ("10s", 10.0), ("30s", 30.0), ("1m", 60.0),
    ("5m", 300.0), ("15m", 900.0), ("1h", 3600.0), ("4h", 14400.0),
)
SECONDS = tuple(s for _, s in BOUNDS)
OUTCOMES = ("succeeded", "retried", "failed", "discarded", "rescued", "cancelled")


def quantile(q: float, cumulative: Sequence[int], count: int) -> float | None:
    """The q-quantile (0..1) of a cumulative histogram with ``count`` values in
    all; None without values. Past the last bound it answers the last bound."""
    if count <= 0:
        return None
    rank = q * count
    lower, below = 0.0, 0
    for bound, cum in zip(SECONDS, cumulative):
        if cum >= rank and cum > below:
            return lower + (bound - lower) * (rank - below) / (cum - below)
        lower, below = bound, cum
    return SECONDS[-1]


@dataclass
class Counts:
    """Everything counted for one window (and any set of queues and tasks)."""

    succeeded: int = 0
    retried: int = 0
    failed: int = 0
    discarded: int = 0
    rescued: int = 0
    rejected: int = 0
    cancelled: int = 0
    run_sum: float = 0.0
    wait_sum: float = 0.0
    run: list[int] = field(default_factory=lambda: [0] * len(BOUNDS))
    wait: list[int] = field(default_factory=lambda: [0] * len(BOUNDS))

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Counts:
        return cls(
            succeeded=int(row["succeeded"] or 0), retried=int(row["retried"] or 0), failed=int(row["failed"] or 0),
            discarded=int(row["discarded"] or 0), rescued=int(row["rescued"] or 0),
            rejected=int(row["rejected"] or 0), cancelled=int(row["cancelled"] or 0),
            run_sum=float(row["run_sum"] or 0), wait_sum=float(row["wait_sum"] or 0),
            run=_buckets(row["run_le"]), wait=_buckets(row["wait_le"]),
        )

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            succeeded=self.succeeded + other.succeeded, retried=self.retried + other.retried,
            failed=self.failed + other.failed, discarded=self.discarded + other.discarded,
            rescued=self.rescued + other.rescued, rejected=self.rejected + other.rejected,
            cancelled=self.cancelled + other.cancelled, run_sum=self.run_sum + other.run_sum,
            wait_sum=self.wait_sum + other.wait_sum,
            run=[a + b for a, b in zip(self.run, other.run)], wait=[a + b for a, b in zip(self.wait, other.wait)],
        )

    @property
    def failures(self) -> int:
        """Attempts that ended in an error: retried, failed for good, or discarded."""
        return self.retried + self.failed + self.discarded

    @property
    def attempts(self) -> int:
        """Attempts that ran to an answer: the failure rate's denominator.
        Rescued and cancelled attempts never gave one, so they are counted apart."""
        return self.succeeded + self.failures

    @property
    def failure_rate(self) -> float | None:
        return self.failures / self.attempts if self.attempts else None

    def run_quantile(self, q: float) -> float | None:
        return quantile(q, self.run, self.succeeded)

    def wait_quantile(self, q: float) -> float | None:
        return quantile(q, self.wait, self.succeeded)

    def to_dict(self, minutes: float) -> dict[str, Any]:
        """Counts, rates per minute over ``minutes``, and the percentiles."""
        per_minute = (lambda n: round(n / minutes, 3)) if minutes > 0 else (lambda n: None)
        return {
            "succeeded": self.succeeded, "retried": self.retried, "failed": self.failed,
            "discarded": self.discarded, "rescued": self.rescued, "rejected": self.rejected,
            "cancelled": self.cancelled, "failures": self.failures, "attempts": self.attempts,
            "failure_rate": _round(self.failure_rate, 4),
            "per_minute": {"succeeded": per_minute(self.succeeded), "failures": per_minute(self.failures),
                           "rescued": per_minute(self.rescued), "rejected": per_minute(self.rejected)},
            "run_seconds": {"p50": _round(self.run_quantile(0.5)), "p95": _round(self.run_quantile(0.95)),
                            "mean": _round(self.run_sum / self.succeeded if self.succeeded else None)},
            "wait_seconds": {"p50": _round(self.wait_quantile(0.5)), "p95": _round(self.wait_quantile(0.95)),
                             "mean": _round(self.wait_sum / self.succeeded if self.succeeded else None)},
        }


def _buckets(values: Sequence[int] | None) -> list[int]:
    """A stored histogram as a list as long as BOUNDS (shorter rows pad with their last count)."""
    out = [int(v or 0) for v in (values or ())][:len(BOUNDS)]
    return out + [out[-1] if out else 0] * (len(BOUNDS) - len(out))


def _round(value: float | None, digits: int = 3) -> float | None:
    if value is None or math.isnan(value):
        return None
    return round(value, digits)
