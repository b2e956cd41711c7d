"""Deploy marks, and the verdict on whether the last deploy changed anything.

`pgsteady deploy mark VERSION` records a mark. The comparison takes two
windows of equal length, one right before the mark and one right after it,
in whole minutes of the counters (the mark's own minute belongs to neither),
and judges each task on four metrics with the explicit rule below. Windows
are as long as ``Rule.window`` when there is that much data, shorter when the
mark is recent or the previous mark is close (the "before" window never
reaches back past the previous mark, so it shows one release only).

The rule, per task (numbers are the Rule defaults):

- failure rate = (retried + failed + discarded) / attempts that ran to an
  answer. Needs ``min_attempts`` (100) attempts on each side. A change counts
  when the higher rate is at least ``rate_ratio`` (1.5x) the lower and
  ``rate_points`` (1 percentage point) above it, and a two-proportion z-test
  gives |z| >= ``z`` (3).
- p95 run time (a bucket estimate, see counts.py) of succeeded attempts.
  Needs ``min_runs`` (200) on each side. A change counts when one side is at
  least ``p95_ratio`` (1.5x) the other and ``p95_seconds`` (10 ms) apart.
- throughput (succeeded attempts) and rescues, as counts over equal windows.
  A change counts when one side is at least ``count_ratio`` (2x) the other
  and (a - b) / sqrt(a + b) reaches ``z`` (3), which takes at least 9 events.

A task is "worse" when any metric is worse, "better" when any is better and
none worse, "no change" when some metric had enough data and none moved, and
"not enough data" when none had. The deploy's verdict is the worst task's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg
from psycopg.rows import dict_row

from ..errors import ConfigError, PgsteadyError
from ..jobs import user_at_host
from ..queries import Queries
from .counts import Counts

WORSE, BETTER, NO_CHANGE, NO_DATA = "worse", "better", "no change", "not enough data"
_RANK = {WORSE: 3, BETTER: 2, NO_CHANGE: 1, NO_DATA: 0}


class DeployNotFound(PgsteadyError):
    """No deploy mark (with that id)."""


@dataclass(frozen=True)
class Rule:
    window: timedelta = timedelta(minutes=60)
    min_window: timedelta = timedelta(minutes=5)
    min_attempts: int = 100
    min_runs: int = 200
    z: float = 3.0
    rate_ratio: float = 1.5
    rate_points: float = 0.01
    p95_ratio: float = 1.5
    p95_seconds: float = 0.010
    count_ratio: float = 2.0

    def __post_init__(self) -> None:
        if self.min_window < timedelta(minutes=1) or self.window < self.min_window:
            raise ConfigError("deploy windows need min_window >= 1 minute and window >= min_window")

    def describe(self) -> str:
        return (
            f"equal windows of up to {_minutes(self.window)} min before and after the mark (at least "
            f"{_minutes(self.min_window)} min); per task: failure rate changes when the higher rate is >= "
            f"{self.rate_ratio:g}x the lower and {self.rate_points:.0%} above it with |z| >= {self.z:g} "
            f"(>= {self.min_attempts} attempts each side); p95 run time changes when one side is >= "
            f"{self.p95_ratio:g}x the other and {self.p95_seconds * 1000:g} ms apart (>= {self.min_runs} runs "
            f"each side); throughput and rescues change when one side is >= {self.count_ratio:g}x the other "
            f"with (a-b)/sqrt(a+b) >= {self.z:g}; a task is worse if any metric is worse"
        )


def marked_by() -> str:
    return user_at_host()


def mark(conn: psycopg.Connection, q: Queries, version: str, *, note: str | None = None,
         by: str | None = None) -> dict[str, Any]:
    version = (version or "").strip()
    if not version or len(version) > 200:
        raise ConfigError("the deploy VERSION must be 1 to 200 characters, for example a tag or a commit hash")
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q.mark_deploy, dict(version=version, note=note, marked_by=by or marked_by())).fetchone()


def list_deploys(conn: psycopg.Connection, q: Queries, *, limit: int = 20) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(q.list_deploys, dict(limit=limit)).fetchall()


def compare(conn: psycopg.Connection, q: Queries, *, until: datetime, rule: Rule = Rule(),
            deploy_id: int | None = None, queue: str | None = None,
            settled_cache: dict[tuple, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """Judge the latest mark (or ``deploy_id``) on counters counted up to
    ``until``; None when there is no mark. ``settled_cache``: a dict the
    caller keeps (the dashboard does) where comparisons that can no longer
    change (``settled``) are kept and answered from."""
    with conn.cursor(row_factory=dict_row) as cur:
        deploy = cur.execute(q.get_deploy, dict(id=deploy_id)).fetchone()
        if deploy is None:
            return None
        key = (deploy["id"], deploy["marked_at"], deploy["previous_at"], rule, queue)
        if settled_cache is not None and key in settled_cache:
            return settled_cache[key]
        result = _compare(cur, q, deploy, until=until, rule=rule, queue=queue)
    if settled_cache is not None and settled(result, until=until, rule=rule):
        settled_cache[key] = result
    return result


def _compare(cur: psycopg.Cursor, q: Queries, deploy: dict[str, Any], *, until: datetime, rule: Rule,
             queue: str | None) -> dict[str, Any]:
    marked = deploy["marked_at"]
    mark_minute = _floor(marked)
    after_start = mark_minute if marked == mark_minute else mark_minute + timedelta(minutes=1)
    length = min(rule.window, _floor(until) - after_start)
    if deploy["previous_at"] is not None:
        length = min(length, mark_minute - _ceil(deploy["previous_at"]))
    length = timedelta(minutes=max(0, math.floor(length.total_seconds() / 60)))
    result: dict[str, Any] = {
        "deploy": {k: deploy[k] for k in ("id", "version", "note", "marked_at", "marked_by")},
        "window_minutes": _minutes(length), "rule": rule.describe(),
        "before": {"from": mark_minute - length, "to": mark_minute},
        "after": {"from": after_start, "to": after_start + length},
    }
    if length < rule.min_window:
        why = (f"only {_minutes(length)} whole minute(s) comparable around the mark, "
               f"{_minutes(rule.min_window)} needed")
        return {**result, "verdict": NO_DATA, "why": why, "tasks": []}
    since = mark_minute - length
    rows = cur.execute(q.window_sums, dict(  # minutes only: an hour row would straddle the mark
        since=since, split_a=mark_minute, split_b=after_start, until=after_start + length, queue=queue,
        hours_from=since, hours_to=since)).fetchall()
    before: dict[str, Counts] = {}
    after: dict[str, Counts] = {}
    for row in rows:
        side = {0: before, 2: after}.get(row["part"])
        if side is not None:  # part 1 is the mark's own minute
            side[row["task"]] = side.get(row["task"], Counts()) + Counts.from_row(row)
    tasks = [judge_task(task, before.get(task, Counts()), after.get(task, Counts()), rule)
             for task in sorted(set(before) | set(after))]
    verdict = max((t["verdict"] for t in tasks), key=_RANK.__getitem__, default=NO_DATA)
    worse = [t["task"] for t in tasks if t["verdict"] == WORSE]
    why = (f"worse for {', '.join(worse)}" if worse else
           "no task had enough data on both sides" if verdict == NO_DATA else f"{verdict} for every task judged")
    return {**result, "verdict": verdict, "why": why, "tasks": tasks}


def settled(result: dict[str, Any], *, until: datetime, rule: Rule = Rule()) -> bool:
    """Whether more counting can no longer change a comparison of ``compare``:
    its after window is as long as the rule allows and counted before
    ``until`` (the counters of a counted minute do not change)."""
    return result["after"]["from"] + rule.window <= _floor(until)


def judge_task(task: str, before: Counts, after: Counts, rule: Rule) -> dict[str, Any]:
    metrics = [judge_failure_rate(before, after, rule), judge_p95(before, after, rule),
               judge_count("throughput", before.succeeded, after.succeeded, rule, higher_is_better=True),
               judge_count("rescues", before.rescued, after.rescued, rule, higher_is_better=False)]
    verdicts = {m["verdict"] for m in metrics}
    verdict = (WORSE if WORSE in verdicts else BETTER if BETTER in verdicts
               else NO_CHANGE if NO_CHANGE in verdicts else NO_DATA)
    return {"task": task, "verdict": verdict, "metrics": metrics}


def judge_failure_rate(before: Counts, after: Counts, rule: Rule) -> dict[str, Any]:
    nb, na = before.attempts, after.attempts
    out = {"metric": "failure_rate", "before": _r(before.failure_rate), "after": _r(after.failure_rate),
           "samples": {"before": nb, "after": na}}
    if min(nb, na) < rule.min_attempts:
        return {**out, "verdict": NO_DATA, "why": f"needs {rule.min_attempts} attempts on each side, has {nb} and {na}"}
    pb, pa = before.failures / nb, after.failures / na
    pooled = (before.failures + after.failures) / (nb + na)
    se = math.sqrt(pooled * (1 - pooled) * (1 / nb + 1 / na))
    z = (pa - pb) / se if se > 0 else 0.0
    lo, hi = min(pa, pb), max(pa, pb)
    moved = hi >= rule.rate_ratio * lo and hi - lo >= rule.rate_points and abs(z) >= rule.z
    verdict = NO_CHANGE if not moved else WORSE if pa > pb else BETTER
    why = f"{pb:.2%} -> {pa:.2%} (z = {z:.1f})"
    return {**out, "z": round(z, 2), "verdict": verdict, "why": why}


def judge_p95(before: Counts, after: Counts, rule: Rule) -> dict[str, Any]:
    b, a = before.run_quantile(0.95), after.run_quantile(0.95)
    out = {"metric": "p95_run_seconds", "before": _r(b), "after": _r(a),
           "samples": {"before": before.succeeded, "after": after.succeeded}}
    if min(before.succeeded, after.succeeded) < rule.min_runs:
        return {**out, "verdict": NO_DATA,
                "why": f"needs {rule.min_runs} succeeded runs on each side, has {before.succeeded} and {after.succeeded}"}
    lo, hi = min(a, b), max(a, b)
    moved = hi >= rule.p95_ratio * lo and hi - lo >= rule.p95_seconds
    verdict = NO_CHANGE if not moved else WORSE if a > b else BETTER
    return {**out, "verdict": verdict, "why": f"{b:.3f}s -> {a:.3f}s (bucket estimates)"}


def judge_count(metric: str, b: int, a: int, rule: Rule, *, higher_is_better: bool) -> dict[str, Any]:
    out = {"metric": metric, "before": b, "after": a}
    if a + b == 0:
        return {**out, "verdict": NO_DATA, "why": "none on either side"}
    z = (a - b) / math.sqrt(a + b)
    moved = abs(z) >= rule.z and max(a, b) >= rule.count_ratio * min(a, b)
    if not moved:
        verdict = NO_CHANGE
    else:
        verdict = BETTER if (a > b) == higher_is_better else WORSE
    return {**out, "z": round(z, 2), "verdict": verdict, "why": f"{b} -> {a} (z = {z:.1f})"}


def _floor(ts: datetime) -> datetime:
    return ts.replace(second=0, microsecond=0)


def _ceil(ts: datetime) -> datetime:
    floor = _floor(ts)
    return floor if floor == ts else floor + timedelta(minutes=1)


def _minutes(delta: timedelta) -> int:
    return int(delta.total_seconds() // 60)


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
