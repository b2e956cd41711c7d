"""What a health check returns: findings, skipped checks, and the JSON shape.

The JSON shape is documented in docs/indexes.md and versioned by
``"format": 1``; fields are only ever added, never renamed or removed,
so a CI job that reads it keeps working.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from datetime import datetime
from typing import Any

from ..errors import ConfigError

# Ascending order; --fail-on compares positions in this tuple.
SEVERITIES = ("info", "warn", "error")

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Thresholds:
    """The numbers that turn an observation into a finding.

    Defaults suit a production database; tests pass small ones so that the
    tables they plant stay small.
    """

    unused_min_bytes: int = 1024 * 1024  # smaller unused indexes cost too little to matter
    bloat_min_bytes: int = 10 * 1024 * 1024  # the estimate is noise on small indexes
    bloat_ratio: float = 0.5  # share of the index estimated to be empty space
    null_fraction: float = 0.8  # share of NULLs in the leading column
    seq_scan_min_bytes: int = 10 * 1024 * 1024  # smaller tables are cheap to scan
    min_seq_scans: int = 100  # fewer scans than this since the stats reset is not a pattern
    unused_min_history_seconds: int = 7 * 86400  # counters younger than this cannot call an index unused
    shape_min_rows: int = 10_000  # a smaller table's index shape costs too little to advise on

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"threshold {f.name} must be a number >= 0, not {value!r}")
        for name in ("bloat_ratio", "null_fraction"):
            if getattr(self, name) > 1:
                raise ConfigError(f"threshold {name} is a fraction between 0 and 1, not {getattr(self, name)!r}")

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class Finding:
    """One problem with one set of objects, and the SQL that fixes and undoes it.

    ``fix_statements`` and ``undo_statements`` hold one statement each,
    because CREATE/DROP INDEX CONCURRENTLY cannot share a multi-statement
    query string (that would be an implicit transaction). ``fix_sql`` and
    ``undo_sql`` are the same statements as one script, or None when there
    is no safe automatic fix (or nothing to undo).
    """

    check: str
    severity: str
    objects: list[str]
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    fix_statements: list[str] = field(default_factory=list)
    undo_statements: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}")

    @property
    def fix_sql(self) -> str | None:
        return "\n".join(self.fix_statements) or None

    @property
    def undo_sql(self) -> str | None:
        return "\n".join(self.undo_statements) or None

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity,
            "objects": list(self.objects),
            "message": self.message,
            "evidence": self.evidence,
            "fix_sql": self.fix_sql,
            "undo_sql": self.undo_sql,
            "fix_statements": list(self.fix_statements),
            "undo_statements": list(self.undo_statements),
        }


def _sort_key(f: Finding) -> tuple:
    return (-SEVERITIES.index(f.severity), f.check, f.objects)


@dataclass
class Report:
    findings: list[Finding]
    skipped: list[tuple[str, str]]
    checks_run: list[str]
    database: str
    server_version: str
    role: str
    checked_at: datetime
    duration_seconds: float
    indexes_checked: int
    scope: dict[str, str | None]
    thresholds: Thresholds

    def __post_init__(self) -> None:
        self.findings.sort(key=_sort_key)

    def counts(self) -> dict[str, int]:
        return {level: sum(f.severity == level for f in self.findings) for level in SEVERITIES}

    def reaches(self, level: str) -> bool:
        """True when any finding is at least as severe as ``level`` (the --fail-on gate)."""
        if level not in SEVERITIES:
            raise ConfigError(f"unknown severity {level!r}; use one of {', '.join(SEVERITIES)}")
        floor = SEVERITIES.index(level)
        return any(SEVERITIES.index(f.severity) >= floor for f in self.findings)

    def by_check(self, check: str) -> list[Finding]:
        return [f for f in self.findings if f.check == check]

    def to_dict(self) -> dict[str, Any]:
        counts = self.counts()
        return {
            "format": FORMAT_VERSION,
            "database": self.database,
            "server_version": self.server_version,
            "role": self.role,
            "checked_at": self.checked_at.isoformat(),
            "duration_seconds": round(self.duration_seconds, 3),
            "scope": dict(self.scope),
            "thresholds": self.thresholds.to_dict(),
            "summary": {**counts, "total": len(self.findings), "indexes_checked": self.indexes_checked},
            "checks_run": list(self.checks_run),
            "skipped": [{"check": check, "reason": reason} for check, reason in self.skipped],
            "findings": [f.to_dict() for f in self.findings],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=str)
