"""Index health: check the existing indexes before anyone changes them.

    from pgsteady.indexes import check
    report = check("postgresql://...", schema="public", unused_min_bytes=8 << 20)
    for finding in report.findings:
        print(finding.severity, finding.check, finding.objects, finding.fix_sql)

One module per family of checks (invalid, overlaps, usage, foreign_keys,
bloat, shape), one read of the catalogue they share (catalog), and the
report they fill (report). ``find_overlaps`` answers, for an index someone
proposes, which existing index already serves it or would become redundant.
"""

from __future__ import annotations

from .overlaps import Overlap, find_overlaps
from .report import SEVERITIES, Finding, Report, Thresholds
from .runner import CatalogUnreadable, check

__all__ = ["check", "find_overlaps", "Finding", "Overlap", "Report", "Thresholds", "SEVERITIES",
           "CatalogUnreadable"]
