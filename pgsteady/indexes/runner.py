"""Run every check against one database and collect a Report.

The catalogue is read once (catalog.load); each family of checks then works
from that snapshot. A family that fails (a permission, a missing view on an
old server) is reported as skipped with the server's reason, and the other
families still run: a partial answer with its gaps named beats no answer.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

import psycopg

from ..database import connect, describe, scrub, unavailable
from ..errors import PgsteadyError, check_options
from . import bloat, catalog, foreign_keys, invalid, overlaps, shape, usage
from .report import Finding, Report, Thresholds

# (name shown when the whole family is skipped, function). Order is the order of the report's checks_run.
FAMILIES: list[tuple[str, Callable[[catalog.Snapshot], Iterator[Finding]]]] = [
    (invalid.CHECK, invalid.findings),
    (overlaps.DUPLICATE, overlaps.duplicates),
    (overlaps.REDUNDANT, overlaps.redundant),
    (usage.UNUSED, usage.unused),
    (foreign_keys.CHECK, foreign_keys.findings),
    (bloat.CHECK, bloat.findings),
    ("index_shape", shape.findings),
    (usage.SEQ_SCANS, usage.seq_scans),
]


class CatalogUnreadable(PgsteadyError):
    """The catalogue query itself failed, so no check can run."""


def check(
    conn_or_dsn: psycopg.Connection | str,
    *,
    schema: str | None = None,
    table: str | None = None,
    also: Iterable[str] = (),
    thresholds: Thresholds | None = None,
    **threshold_values: float,
) -> Report:
    """Check the indexes of one database (or one schema, or one table).

    Thresholds come either as a :class:`Thresholds` or as its field names
    (``unused_min_bytes=...``); an unknown name is an error, not ignored.
    ``also`` lists replica DSNs whose index scans count before an index is
    called unused.
    """
    if threshold_values:
        check_options(threshold_values, Thresholds.__dataclass_fields__, "indexes.check", what="threshold")
        base = (thresholds or Thresholds()).to_dict()
        thresholds = Thresholds(**{**base, **threshold_values})
    thresholds = thresholds or Thresholds()
    if isinstance(conn_or_dsn, str):
        with connect(conn_or_dsn, autocommit=True) as conn:
            return _run(conn, conn_or_dsn, schema, table, tuple(also), thresholds)
    dsn = conn_or_dsn.info.dsn
    return _run(conn_or_dsn, dsn, schema, table, tuple(also), thresholds)


def _run(conn: psycopg.Connection, dsn: str, schema: str | None, table: str | None,
         also: tuple[str, ...], thresholds: Thresholds) -> Report:
    started = time.perf_counter()
    try:
        table_oid = catalog.resolve_scope(conn, schema, table)
        snap = catalog.load(conn, schema=schema, table_oid=table_oid, thresholds=thresholds, also=also)
    except psycopg.OperationalError as exc:
        raise unavailable(dsn, exc) from None
    except psycopg.Error as exc:
        raise CatalogUnreadable(f"cannot read the index catalogue: {_first_line(exc)}") from None
    findings: list[Finding] = []
    ran: list[str] = []
    for name, family in FAMILIES:
        try:
            # A savepoint (or a short transaction) per family, so one failure
            # does not abort the caller's transaction for the others.
            with conn.transaction():
                findings.extend(family(snap))
            ran.append(name)
        except psycopg.OperationalError as exc:
            raise unavailable(dsn, exc) from None
        except psycopg.Error as exc:
            snap.skipped.append((name, f"the server refused it: {_first_line(exc)}"))
    return Report(
        findings=findings,
        skipped=snap.skipped,
        checks_run=ran,
        database=describe(dsn),
        server_version=snap.server["server_version"],
        role=snap.server["role"],
        checked_at=datetime.now(timezone.utc),
        duration_seconds=time.perf_counter() - started,
        indexes_checked=len(snap.indexes),
        scope={"schema": schema, "table": table},
        thresholds=thresholds,
    )


def _first_line(exc: BaseException) -> str:
    text = scrub(str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__
