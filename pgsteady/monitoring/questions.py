"""The status questions: each one a small function over one Snapshot.

``QUESTIONS`` is the one list of what makes pgsteady "down" or "degraded"
(the index health ``FAMILIES`` are the pattern). `pgsteady status` asks all
of them, ``/readyz`` those marked ``readiness``, and the metrics and the
dashboard show the same rules' answers. To add or change a status
question, change this file: a rule (``worker_alive``, ``queue_slow``,
``task_failing``, ...) and its row in ``QUESTIONS``; nothing else computes
these answers.

    Snapshot (snapshot.read) ──► QUESTIONS[i].ask(snap, thresholds) ──► [Finding]
                                       │                                      │
                     status sections, metrics, dashboard        health = worst level
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .counts import Counts
from .deploys import WORSE
from ..queues import QueueRow
from .snapshot import PastLease, Snapshot, WorkerRow

DOWN, DEGRADED = "down", "degraded"


@dataclass(frozen=True)
class Thresholds:
    """What counts as degraded or down; every field is a `pgsteady status` option."""

    worker_timeout: float = 60.0        # seconds without a heartbeat before a worker counts as down
    dead_worker_window: float = 3600.0  # a worker that went down this recently makes status degraded
    min_workers: int = 1                # fewer live workers than this: down (0 turns it off)
    max_wait: float = 300.0             # oldest due job of a queue waiting longer: degraded
    max_failure_rate: float = 0.10      # a task failing more of its attempts in 15 minutes: degraded
    min_attempts: int = 20              # ... judged only with at least this many attempts
    max_counter_lag: float = 300.0      # counters older than this: degraded (is a leader running?)
    max_past_lease: float = 60.0        # a running job whose lease expired longer ago: degraded (stuck)


@dataclass(frozen=True)
class Finding:
    level: str   # DOWN or DEGRADED
    text: str


@dataclass(frozen=True)
class Question:
    name: str
    section: str                                             # up | slow | failing | deploy
    ask: Callable[[Snapshot, Thresholds], list[Finding]]
    readiness: bool                                          # a finding also fails /readyz
    doc: str


# -- the rules (each answered here and nowhere else) -------------------------

def worker_alive(w: WorkerRow, th: Thresholds) -> bool:
    return w.heartbeat_age <= th.worker_timeout


def live_workers(snap: Snapshot, th: Thresholds) -> list[WorkerRow]:
    return [w for w in snap.workers if worker_alive(w, th)]


def leader_alive(snap: Snapshot, th: Thresholds) -> bool | None:
    """True/False for the maintenance leader; None when there is none (or no leader table).
    The lease row's expiry decides, as it does for the workers that would take over."""
    current = snap.leader()
    return None if current is None else current.expires_in > 0


def queue_slow(q: QueueRow, th: Thresholds) -> bool:
    """A queue is slow when its oldest due job waited past max_wait (a paused queue is meant to wait)."""
    return q.waiting > 0 and q.oldest_age > th.max_wait and not q.paused


def stuck(p: PastLease, th: Thresholds) -> bool:
    return p.jobs > 0 and (p.oldest_seconds or 0.0) > th.max_past_lease


def task_failing(recent: Counts, th: Thresholds) -> bool:
    rate = recent.failure_rate
    return recent.attempts >= th.min_attempts and rate is not None and rate > th.max_failure_rate


def queue_windows(snap: Snapshot) -> tuple[dict[str, Counts], dict[str, Counts]]:
    """Per queue: the last 15 minutes, and the whole day."""
    recent: dict[str, Counts] = {}
    day: dict[str, Counts] = {}
    for row in snap.windows:
        day[row.queue] = day.get(row.queue, Counts()) + row.counts
        if row.part == 2:
            recent[row.queue] = recent.get(row.queue, Counts()) + row.counts
    return recent, day


def task_windows(snap: Snapshot) -> dict[str, tuple[Counts, Counts]]:
    """Per task: (the last 15 minutes, the last hour)."""
    out: dict[str, tuple[Counts, Counts]] = {}
    for row in snap.windows:
        if row.part < 1:
            continue
        r, h = out.get(row.task, (Counts(), Counts()))
        out[row.task] = (r + row.counts if row.part == 2 else r, h + row.counts)
    return out


# -- the questions -----------------------------------------------------------

def _database(snap: Snapshot, th: Thresholds) -> list[Finding]:
    return [] if snap.reachable else [Finding(DOWN, snap.error or "the database cannot be reached")]


def _schema(snap: Snapshot, th: Thresholds) -> list[Finding]:
    have, want = snap.schema_version, snap.expected_version
    if not snap.reachable or have == want:
        return []
    if have < want:
        return [Finding(DOWN, f"the {snap.schema!r} schema is at version {have}, this pgsteady needs {want}: "
                              "run `pgsteady migrate`")]
    return [Finding(DOWN, f"the {snap.schema!r} schema is at version {have}, newer than this pgsteady ({want})")]


def _dead_workers(snap: Snapshot, th: Thresholds) -> list[Finding]:
    return [Finding(DEGRADED, f"worker {w.id} is down: no heartbeat for {ago(w.heartbeat_age)}")
            for w in snap.workers if not worker_alive(w, th) and w.heartbeat_age <= th.dead_worker_window]


def _workers(snap: Snapshot, th: Thresholds) -> list[Finding]:
    live = live_workers(snap, th)
    if len(live) >= th.min_workers:
        return []
    what = f"for queue {snap.queue!r} " if snap.queue else ""
    return [Finding(DOWN, f"no live worker {what}(heartbeat within {ago(th.worker_timeout)})" if not live else
                          f"only {len(live)} live worker(s) {what}, {th.min_workers} needed")]


def _leader(snap: Snapshot, th: Thresholds) -> list[Finding]:
    # A fleet that just started has not elected a leader yet; give it one worker timeout.
    settled = any(w.uptime > th.worker_timeout for w in live_workers(snap, th))
    if snap.leaders is None or not settled or leader_alive(snap, th):
        return []
    return [Finding(DEGRADED, "no live maintenance leader: rescue, cron, pruning and counters are not running")]


def _counters(snap: Snapshot, th: Thresholds) -> list[Finding]:
    if snap.progress is None:
        return [Finding(DEGRADED, "the counters have never been updated: the maintenance leader (a running "
                                  "worker) updates them every few seconds")]
    lag = snap.progress.lag_seconds
    if lag > th.max_counter_lag:
        return [Finding(DEGRADED, f"the counters are {ago(lag)} behind (threshold {ago(th.max_counter_lag)}): "
                                  "is the maintenance leader running?")]
    return []


def _queues(snap: Snapshot, th: Thresholds) -> list[Finding]:
    return [Finding(DEGRADED, f"queue {q.queue!r} is slow: its oldest due job has waited {ago(q.oldest_age)} "
                              f"(threshold {ago(th.max_wait)}), {q.waiting} job(s) waiting")
            for q in snap.queues if queue_slow(q, th)]


def _past_lease(snap: Snapshot, th: Thresholds) -> list[Finding]:
    p = snap.past_lease
    if not stuck(p, th):
        return []
    return [Finding(DEGRADED, f"{p.jobs} running job(s) past their lease, the oldest by {ago(p.oldest_seconds)} "
                              f"(threshold {ago(th.max_past_lease)}): is rescue running?")]


def _tasks(snap: Snapshot, th: Thresholds) -> list[Finding]:
    top = {}
    for e in snap.errors:
        top.setdefault(e.task, e)
    out = []
    for task, (recent, _) in sorted(task_windows(snap).items()):
        if task_failing(recent, th):
            err = top.get(task)
            out.append(Finding(DEGRADED, f"task {task!r} is failing: {recent.failure_rate:.0%} of {recent.attempts} "
                                         f"attempts in the last 15 minutes (threshold {th.max_failure_rate:.0%})"
                                         + (f"; top error: {err.message}" if err else "")))
    return out


def _deploy(snap: Snapshot, th: Thresholds) -> list[Finding]:
    dep = snap.deploy
    if dep is None or dep["verdict"] != WORSE:
        return []
    d = dep["deploy"]
    return [Finding(DEGRADED, f"deploy {d['version']} (marked {d['marked_at']:%Y-%m-%d %H:%M}) made things "
                              f"worse: {dep['why']}")]


QUESTIONS: tuple[Question, ...] = (
    Question("database", "up", _database, True, "Can the database be reached?"),
    Question("schema", "up", _schema, True, "Is the schema at this pgsteady's version?"),
    Question("dead_workers", "up", _dead_workers, False, "Did a worker stop heartbeating recently?"),
    Question("workers", "up", _workers, True, "Are at least min_workers workers alive?"),
    Question("leader", "up", _leader, False, "Is a maintenance leader alive?"),
    Question("counters", "slow", _counters, False, "Are the counters current?"),
    Question("queues", "slow", _queues, True, "Does any queue's oldest due job wait too long?"),
    Question("past_lease", "slow", _past_lease, True, "Is a running job stuck past its lease?"),
    Question("tasks", "failing", _tasks, False, "Does any task fail too many of its attempts?"),
    Question("deploy", "deploy", _deploy, False, "Did the last deploy make things worse?"),
)


def answers(snap: Snapshot, th: Thresholds, *, readiness_only: bool = False) -> dict[str, list[Finding]]:
    """The findings of each question asked, by its name, in the order of
    QUESTIONS. Of a database that cannot be read, or a schema that is not
    current, only those two questions are asked: nothing else was read."""
    return {q.name: q.ask(snap, th) for q in QUESTIONS if (q.readiness or not readiness_only)
            and (snap.schema_current or q.name in ("database", "schema"))}


def ordered(answered: dict[str, list[Finding]]) -> list[Finding]:
    """Every finding of ``answers``, down ones first (each level in the order of QUESTIONS)."""
    found = [f for findings in answered.values() for f in findings]
    return [f for f in found if f.level == DOWN] + [f for f in found if f.level != DOWN]


def ask(snap: Snapshot, th: Thresholds, *, readiness_only: bool = False) -> list[Finding]:
    """Every finding, down ones first (see ``answers`` and ``ordered``)."""
    return ordered(answers(snap, th, readiness_only=readiness_only))


def ago(seconds: float | None) -> str:
    seconds = max(0.0, float(seconds or 0.0))
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"
