"""The side-by-side benchmark suite: pgsteady, Procrastinate, PgQueuer and a
plain-SQL queue on one throwaway PostgreSQL, in one run, reported as ratios.

    .venv/bin/python -m bench [--quick | --smoke] [--only SCENARIO ...] [--json out.json] [--dsn DSN]

See docs/benchmarks.md for what each scenario measures and the last results.
"""
