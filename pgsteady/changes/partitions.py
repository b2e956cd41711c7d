"""An index on a partitioned table: the whole route as one change and one durable job.

CREATE INDEX CONCURRENTLY cannot build on a partitioned table, and a plain
CREATE INDEX on it blocks writes to every partition for the whole build.
The route that blocks nothing takes three kinds of statement, and the
change file names only the first, as ``CREATE INDEX CONCURRENTLY idx ON
parent (...)``; the build job runs the rest:

    CREATE INDEX idx ON ONLY parent (...)             instant, INVALID, no partition touched
      |
    for each partition, in order:
      |-- an index is attached to idx already ..................... skip (a resumed job)
      |-- <partition>_<idx> exists, INVALID (a killed build) ........ DROP CONCURRENTLY, then build
      |-- <partition>_<idx> exists, valid, same definition .......... attach it
      '-- CREATE INDEX CONCURRENTLY <partition>_<idx> ON partition (...)
          ALTER INDEX idx ATTACH PARTITION <partition>_<idx>         instant
      (progress per partition in the step's details: done / total / current)
      |
    idx is valid once the last partition is attached ................ done

Every statement runs under the change's lock_timeout with its retries (the
build's ``_run_ddl``); a kill at any point leaves a state this walk
resumes from. The rollback is ``DROP INDEX IF EXISTS idx``: a partitioned
index cannot be dropped concurrently, so it runs plain, under the same
short lock_timeout, and takes every partition's index with it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import psycopg

from ..indexes import ddl
from ..indexes import probes
from ..indexes.catalog import partitions_of, truncate_name
from ..queries import Queries
from ..tasks import Discard
from .targets import Target

if TYPE_CHECKING:  # pragma: no cover
    from .build import Build


def lint_findings(st: Any, target: Target, conn: psycopg.Connection, result: Any) -> bool:
    """Lint of a CREATE INDEX CONCURRENTLY on a partitioned table; True when the route may run."""
    parts = partitions_of(conn, target.table_oid)
    nested = [p["qualified"] for p in parts if p["relkind"] == "p"]
    if nested:
        result.add("partitioned-parent", f"{', '.join(nested)} is itself partitioned; pgsteady builds the route on "
                   "one level of partitions: index the sub-partitioned table in a change of its own first")
        return False
    result.add("partitioned-route", f"{target.table} is partitioned: apply creates {st.index} ON ONLY "
               f"{target.table}, builds it CONCURRENTLY on each of its {len(parts)} partition(s) and attaches "
               "each, in one resumable job; the rollback drops the partitioned index (not concurrently: "
               "PostgreSQL cannot), under the lock timeout", "note")
    return True


def rollback_of(st: Any, target: Target) -> str:
    name = target.index or st.index_name
    return f"DROP INDEX IF EXISTS {name}"


def partition_index_name(conn: psycopg.Connection, q: Queries, part: dict[str, Any], index: str) -> str:
    """The name of ``index``'s index on ``part``: the same on every attempt (resume), unless another
    relation holds it."""
    base = f"{part['name']}_{index}"
    for n in range(100):
        name = truncate_name(base, f"_{n}" if n else "")
        found = probes.resolve_relation(conn, ddl.ident(part["schema"], name))
        if found is None:
            return name
        state = probes.index_state(conn, found["oid"]) if found["relkind"] == "i" else None
        if state is not None and state["table_oid"] == part["oid"]:
            return name  # ours, from an earlier attempt
    raise RuntimeError(f"no free index name like {base!r} on {part['qualified']}")


def run_route(build: Build, target: Target) -> str:
    conn, q = build.conn, build.q
    state = build.state(target)
    if state is not None and state["is_valid"]:
        if build.identical(target, state):
            return "nothing to do: a valid identical partitioned index is already there"
        raise Discard(f"{target.index} exists with another definition ({state['indexdef']}); rename the new index")
    if state is None:
        parent = ddl.deparse(build.change.node, concurrent=False, if_not_exists=False,
                             relation=_only(build.change.node.relation, target))
        build.log(f"creating {target.index} ON ONLY {target.table} (no partition is touched)")
        build.run_ddl(target, text=parent)
        state = build.state(target)
    index_schema, index_name = state["schema"], state["name"]
    parts = partitions_of(conn, target.table_oid)
    missing = {p["oid"] for p in partitions_of(conn, target.table_oid, unattached_to=state["oid"])}
    total, done = len(parts), len(parts) - len(missing)
    build.note({"partitions": {"done": done, "total": total, "current": None}})
    for part in parts:
        if part["oid"] not in missing:
            continue
        name = partition_index_name(conn, q, part, index_name)
        qualified = ddl.ident(part["schema"], name)
        build.note({"partitions": {"done": done, "total": total, "current": part["qualified"]}})
        existing = probes.resolve_relation(conn, qualified)
        existing_state = probes.index_state(conn, existing["oid"]) if existing else None
        if existing_state is not None and not existing_state["is_valid"]:
            build.log(f"{qualified} is an INVALID leftover of an interrupted build; dropping it")
            build.drop_leftover(target, qualified)
            existing_state = None
        if existing_state is None:
            build.log(f"partition {done + 1}/{total}: building {qualified} on {part['qualified']}")
            statement = ddl.on_partition(state["indexdef"], part["schema"], part["name"], name).rstrip(";")
            build.run_ddl(target, cleanup=lambda: build.drop_leftover(target, qualified, quiet=True),
                           text=statement)
        build.run_ddl(target, text=ddl.attach(index_schema, index_name, part["schema"], name).rstrip(";"))
        done += 1
        build.log(f"partition {done}/{total}: {part['qualified']} attached")
        build.note({"partitions": {"done": done, "total": total, "current": None}})
    state = build.state(target)
    if not state["is_valid"]:
        raise RuntimeError(f"{target.index} is not valid after attaching every partition; the next attempt "
                           "looks again")
    return f"built {target.index} on {total} partition(s) and attached each; the partitioned index is valid"


def _only(rel: Any, target: Target) -> Any:
    from pglast import ast

    return ast.RangeVar(schemaname=rel.schemaname or target.table_schema, relname=rel.relname, inh=False,
                        relpersistence="p")
