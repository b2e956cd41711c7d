"""How long `indexes check` takes on a catalogue of 5,000 indexes.

    PGSTEADY_BENCH_DSN=postgresql://postgres@127.0.0.1:5432/postgres .venv/bin/python bench/indexes_5000.py

Creates a scratch database with 500 small tables x 10 indexes (a primary
key, a foreign key, plain, composite, partial, expression, unique, GIN and
deliberately duplicate or redundant ones, so that every check has work to
do), analyses it, times ``check`` three times and prints the median. The
target is under two seconds. Without PGSTEADY_BENCH_DSN it uses PGSTEADY_DSN,
else the embedded server. The database is dropped at the end.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
import uuid

import psycopg
from psycopg import sql

from pgsteady.database import resolve_dsn, with_dbname
from pgsteady.indexes import check

TABLES = 500
RUNS = 3


def table_sql(n: int) -> str:
    t = f"t{n:04d}"
    return f"""
        CREATE TABLE {t} (id int PRIMARY KEY, parent_id int REFERENCES parent (id), a int, b int, c text,
                          flag boolean, tags text[], deleted_at timestamptz);
        INSERT INTO {t} SELECT g, g % 10 + 1, g, g % 7, 'c' || g, g % 2 = 0, ARRAY['x'], NULL
          FROM generate_series(1, 20) g;
        CREATE INDEX {t}_parent_idx ON {t} (parent_id);
        CREATE INDEX {t}_a_idx ON {t} (a);
        CREATE INDEX {t}_ab_idx ON {t} (a, b);
        CREATE INDEX {t}_a_copy_idx ON {t} (a);
        CREATE UNIQUE INDEX {t}_c_key ON {t} (c);
        CREATE INDEX {t}_lower_c_idx ON {t} (lower(c)) WHERE deleted_at IS NULL;
        CREATE INDEX {t}_tags_idx ON {t} USING gin (tags);
        CREATE INDEX {t}_flag_idx ON {t} (flag);
        CREATE INDEX {t}_b_idx ON {t} (b) INCLUDE (c);
    """


def build(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE parent (id int PRIMARY KEY)")
        conn.execute("INSERT INTO parent SELECT generate_series(1, 10)")
        for start in range(0, TABLES, 50):
            with conn.transaction():
                conn.execute("".join(table_sql(n) for n in range(start, start + 50)))
        conn.execute("ANALYZE")
        count = conn.execute("SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                             "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'").fetchone()[0]
    print(f"built {TABLES} tables with {count} indexes", file=sys.stderr)


def main() -> None:
    server = os.environ.get("PGSTEADY_BENCH_DSN") or resolve_dsn(None)
    name = f"bench_indexes_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(server, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = with_dbname(server, name)
    try:
        build(dsn)
        timings = []
        for _ in range(RUNS):
            started = time.perf_counter()
            report = check(dsn)
            timings.append(time.perf_counter() - started)
        counts = report.counts()
        print(f"indexes check on {report.indexes_checked} indexes ({report.server_version.split()[0]}): "
              f"median {statistics.median(timings):.3f}s of {RUNS} runs "
              f"[{', '.join(f'{t:.3f}' for t in timings)}]; findings {counts}")
    finally:
        with psycopg.connect(server, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


if __name__ == "__main__":
    main()
