"""What the security check returns: one Result per question asked, and the JSON shape.

Every check answers with a status (pass, warn, fail; skip when it could not
look, with the reason), the evidence it saw and the fix. The JSON shape is
documented in docs/security.md and versioned by ``"format": 1``; fields are
only ever added, never renamed or removed.

Evidence never holds a secret: checks put counts, modes, names and masked
values there, never a password, a token or a job argument's value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..errors import ConfigError

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
STATUSES = (PASS, WARN, FAIL, SKIP)
# --fail-on compares positions in this tuple; skip never fails a run.
GATES = (WARN, FAIL)
AREAS = ("permissions", "secrets", "headers", "upload limits", "logging")

FORMAT_VERSION = 1


@dataclass
class Result:
    """The answer of one check about one subject (a role, a file, a URL, a setting)."""

    check: str
    area: str
    status: str
    subject: str
    message: str
    fix: str | None = None
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown status {self.status!r}")
        if self.area not in AREAS:
            raise ValueError(f"unknown area {self.area!r}")

    def to_dict(self) -> dict[str, Any]:
        return {"check": self.check, "area": self.area, "status": self.status, "subject": self.subject,
                "message": self.message, "fix": self.fix, "evidence": self.evidence}


_ORDER = {FAIL: 0, WARN: 1, SKIP: 2, PASS: 3}


@dataclass
class Report:
    results: list[Result]
    database: str | None
    role: str | None
    schema: str
    checked_at: datetime
    duration_seconds: float
    urls: list[str]

    def __post_init__(self) -> None:
        # Areas in their fixed order, worst first within an area.
        self.results.sort(key=lambda r: (AREAS.index(r.area), _ORDER[r.status], r.check, r.subject))

    def counts(self) -> dict[str, int]:
        return {status: sum(r.status == status for r in self.results) for status in STATUSES}

    def reaches(self, level: str) -> bool:
        """True when a result is at least as bad as ``level`` (the --fail-on gate)."""
        if level not in GATES:
            raise ConfigError(f"unknown level {level!r} for --fail-on; use warn or fail")
        floor = GATES.index(level)
        return any(r.status in GATES and GATES.index(r.status) >= floor for r in self.results)

    def by_check(self, check: str) -> list[Result]:
        return [r for r in self.results if r.check == check]

    def status_of(self, check: str, subject: str | None = None) -> str:
        """The one status of ``check`` (for ``subject``); raises when there is not exactly one."""
        found = [r for r in self.by_check(check) if subject is None or r.subject == subject]
        if len(found) != 1:
            raise KeyError(f"{len(found)} results for {check!r} {subject or ''}: {[r.subject for r in found]}")
        return found[0].status

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT_VERSION,
            "database": self.database,
            "role": self.role,
            "schema": self.schema,
            "urls": list(self.urls),
            "checked_at": self.checked_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
            "summary": {**self.counts(), "total": len(self.results)},
            "results": [r.to_dict() for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)
